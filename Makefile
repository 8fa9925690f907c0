# Two commands do all the set-up: `make report` (main job) and `make test`.
# Each creates the virtual environment in .venv if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?= full
OUT ?= reports/latest
BIN := $(VENV)/bin
STAMP := $(VENV)/.kit-installed

.PHONY: report test env bench clean-reports kernel lab

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

env: $(STAMP)

report: $(STAMP)
	$(BIN)/kit report --profile $(PROFILE) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The kit's environment as the Jupyter kernel "Python (kit)", and the notebooks pointed at it.
kernel: $(STAMP)
	$(BIN)/python -m kit.report.lab

# JupyterLab on 127.0.0.1 only; root (containers) must say --allow-root, see docs/jupyterlab.md.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: kernel
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $(LAB_ARGS) notebooks/

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-reports:
	rm -rf reports/*/

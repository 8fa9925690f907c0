# Two commands do all the set-up: `make report` (main job) and `make test`.
# Each creates the virtual environment in .venv if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
PROFILE ?= full
OUT ?= reports/latest
BIN := $(VENV)/bin
STAMP := $(VENV)/.kit-installed

.PHONY: report test env bench clean-reports

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

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-reports:
	rm -rf reports/*/

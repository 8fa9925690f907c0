"""Every notebook, executed by papermill with the quick profile, must run and publish."""

from __future__ import annotations

import json

import pytest

from kit.report.profiles import list_notebooks
from kit.report.runner import run_notebook

NOTEBOOKS = list_notebooks()
SAVE_ARTIFACTS = {"05_batching", "08_autotune", "09_versions_and_resilience"}  # end with "Deploy what was chosen"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_quick_profile(notebook, tmp_path):
    run = run_notebook(notebook, tmp_path, profile="quick")
    assert run.status == "ok", f"{notebook.name} failed in cell {run.failed_cell}: {run.error}"
    results = json.loads((tmp_path / f"{notebook.stem}.results.json").read_text())
    assert results["headline"], f"{notebook.name} published no headline figures"
    assert (tmp_path / f"{notebook.stem}.html").stat().st_size > 10_000
    if notebook.stem in SAVE_ARTIFACTS:
        from kit.artifacts import file_sha256

        listing = json.loads((tmp_path / "artifacts" / notebook.stem / "ARTIFACTS.json").read_text())
        assert listing, f"{notebook.name} saved no artifacts"
        assert sorted(r["file"] for r in results["artifacts"]) == sorted(r["file"] for r in listing)
        assert all(file_sha256(tmp_path / r["file"]) == r["sha256"] for r in listing)


def test_notebooks_are_committed_clean_with_a_parameters_cell():
    import nbformat

    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.get("kernelspec") and nb.metadata.get("language_info"), path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), f"{path.name}: first code cell not tagged"
        assert not any(c.get("outputs") for c in code), f"{path.name}: outputs committed"


def test_every_parameter_has_a_type_and_a_help_comment():
    import papermill as pm

    for path in NOTEBOOKS:
        for name, info in pm.inspect_notebook(str(path)).items():
            assert info["inferred_type_name"] != "None" and info["help"], f"{path.name}: {name}"

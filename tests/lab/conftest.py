"""Fixtures of the browser test: one JupyterLab server and one headless Chromium for the whole module."""

from __future__ import annotations

import pytest
from labdriver import LabServer, chrome, missing_browser, prepare_notebooks

from kit.report.lab import KERNEL_NAME
from kit.report.profiles import list_notebooks, profile_parameters
from kit.report.runner import QUIET_ENV

# On top of the quick profile: what the browser test needs that CI's report does not.
# 00's quick profile measures one batch size, so its batch-size control would not be offered.
LAB_OVERRIDES: dict[str, dict] = {"00_engines": {"batch_sizes": [1, 8]}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving parameterized copies of every notebook, with the ``kit`` kernel of this interpreter."""
    why = missing_browser()
    if why:
        pytest.skip(why)
    from labdriver import REPO_ROOT

    home = tmp_path_factory.mktemp("jupyterlab")
    sources = list_notebooks()
    params = {p.stem: {**profile_parameters(p, "quick"), **LAB_OVERRIDES.get(p.stem, {})} for p in sources}
    prepare_notebooks(sources, home / "notebooks", params, KERNEL_NAME)
    kernel_env = {**QUIET_ENV, "PYTHONPATH": str(REPO_ROOT)}  # the kernel imports this checkout's kit
    server = LabServer.start(home, home / "notebooks", kernel_env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab):
    driver = chrome()
    yield driver
    driver.quit()

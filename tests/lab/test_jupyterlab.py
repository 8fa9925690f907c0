"""Every notebook, as a researcher runs it: JupyterLab in headless Chromium, Run All, then the controls.

Checks, per notebook on the quick profile: Run All reaches the last cell with no error output
(in the notebook or inside a widget); every widget and every ``kit.interactive`` output is
non-empty right after Run All; 00, 01 and 05 offer controls, and in every notebook that does,
moving the first control of its first panel changes the rendered output, without an error or a
NaN (which catches a widget that uses what a later cell closed);
every dashboard holds exactly one figure 10 s (at least) after the first one appeared. Screenshots of each notebook
land in the test's ``tmp_path``. Skips (with the reason) without chromium, chromedriver or
selenium; ``.ci/install-browser`` installs them.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from labdriver import LabPage

from kit.report.lab import KERNEL_NAME
from kit.report.profiles import list_notebooks

NOTEBOOKS = list_notebooks()
MUST_OFFER_A_CONTROL = ("00", "01", "05")
DASHBOARD_SETTLE_S = 4.0  # the dashboard redraws every 1 s: a figure added per redraw shows by then
QUIET_FAILURE = re.compile(r"\bnan\b|\b0\.0+ (samples|queries|q)/s\b", re.IGNORECASE)
"""Figures that mean a computation failed without raising (every request errored, nothing measured)."""


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_jupyterlab(notebook, lab, browser, tmp_path):
    page = LabPage(browser, lab)
    problems: list[str] = []
    phases = {"start": time.monotonic()}
    try:
        page.open(notebook.name, KERNEL_NAME)
        phases["opened"] = time.monotonic()
        state = page.run_all()
        phases["ran_all"] = time.monotonic()
        browser.save_screenshot(str(tmp_path / f"{notebook.stem}-1-after-run-all.png"))
        problems += [f"cell {e['code_cell']} raised {e['ename']}: {e['evalue']}" for e in state["errors"]]
        if state["unrun"] and not state["errors"]:
            problems.append(f"code cells {state['unrun']} never ran")
        errors_after_run_all = page.dom_errors()
        problems += [f"error output: {text}" for text in errors_after_run_all]
        problems += page.empty_widgets()
        panels = page.panels()
        for i, panel in enumerate(panels):
            panel.screenshot(str(tmp_path / f"{notebook.stem}-2-interactive-{i}.png"))
        if not panels and notebook.stem[:2] in MUST_OFFER_A_CONTROL:
            problems.append("no kit.interactive panel to move a control in")
        if panels:  # in every notebook that offers controls, a widget must still work after Run All
            before, after = page.move_first_control(panels[0])
            panels[0].screenshot(str(tmp_path / f"{notebook.stem}-3-control-moved.png"))
            if after == before:
                problems.append("moving the first control did not change the rendered output")
            quiet_failure = QUIET_FAILURE.search(page.text_of(panels[0]))
            if quiet_failure:  # e.g. a widget measuring an engine a later cell closed: 0.0 samples/s, p99 nan
                problems.append(f"after moving a control the output shows {quiet_failure.group(0)!r}")
            problems += [f"after moving a control: {text}" for text in page.dom_errors()
                         if text not in errors_after_run_all]
        phases["checked"] = time.monotonic()
        time.sleep(max(0.0, DASHBOARD_SETTLE_S - (time.monotonic() - state["first_dashboard_at"])))
        images = page.dashboard_images()
        if not images and "Dashboard(" in notebook.read_text():
            problems.append("the notebook shows a Dashboard, but no live dashboard panel is on the page")
        if any(n != 1 for n in images):
            problems.append(f"dashboards hold {images} figures {DASHBOARD_SETTLE_S:g} s on; each must hold one")
        for i, dashboard in enumerate(page.dashboards()):
            dashboard.screenshot(str(tmp_path / f"{notebook.stem}-4-dashboard-{i}.png"))
    finally:
        phases["checked_dashboards"] = time.monotonic()
        page.close()
        phases["closed"] = time.monotonic()
        marks = list(phases.items())
        (tmp_path / "phases.json").write_text(json.dumps(
            {name: round(t - marks[i][1], 1) for i, (name, t) in enumerate(marks[1:])}, indent=1))
    assert not problems, f"{notebook.name} in JupyterLab (screenshots in {tmp_path}):\n  " + "\n  ".join(problems)

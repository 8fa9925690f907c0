"""A JupyterLab server and a headless Chromium for the browser test, and what a researcher does in them.

Kept apart from the test so that each step (open, Run All, wait, read errors, move a control)
has one name and one place. The notebook actions go through JupyterLab's own command registry
(``window.jupyterapp``, exposed with ``--LabApp.expose_app_in_browser``): the same commands the
Run menu calls, without depending on where a menu item sits on the page.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Lab settings for a test run: every cell stays in the page (no windowing), no news or update pop-ups.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def missing_browser() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (.ci/install-browser installs it)"
    if not any(shutil.which(n) for n in CHROMIUM_NAMES):
        return "no chromium on PATH (.ci/install-browser installs Debian's chromium)"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH (.ci/install-browser installs Debian's chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_notebooks(sources: list[Path], target: Path, parameters: dict[str, dict[str, Any]],
                      kernel: str) -> list[Path]:
    """Copies of ``sources`` in ``target`` with ``parameters[stem]`` injected as papermill would, not executed."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for src in sources:
        nb = load_notebook_node(str(src))  # as papermill reads it (every cell gets its tags list)
        nb = parameterize_notebook(nb, parameters.get(src.stem, {}), kernel_name=None, language="python")
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
            cell.setdefault("id", secrets.token_hex(4))  # papermill's injected cell has none
        nb.metadata.pop("papermill", None)
        copies.append(target / src.name)
        nbformat.write(nb, copies[-1])
    return copies


@dataclass
class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a token, an isolated config and the ``kit`` kernel of this interpreter."""

    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, home: Path, root_dir: Path, kernel_env: dict[str, str], timeout_s: float = 90) -> LabServer:
        from kit.report.lab import write_kernel

        data = home / "data"
        write_kernel(data / "kernels", python=sys.executable, env=kernel_env)
        settings = home / "user-settings"
        for rel, values in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIT_", "JUPYTER"))}
        env.update(JUPYTER_PATH=str(data), JUPYTER_DATA_DIR=str(data), JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_PLATFORM_DIRS="1")
        port, token = free_port(), secrets.token_hex(16)
        cmd = [sys.executable, "-m", "jupyterlab", "--ip", "127.0.0.1", f"--port={port}", "--no-browser",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={home / 'workspaces'}", "--LabApp.news_url=None"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI run as root; the server still listens on 127.0.0.1 only
        log_path = home / "jupyterlab.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root_dir,
                                       start_new_session=True)
        server = cls(root_dir, port, token, process, log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        return server
            except OSError:
                time.sleep(0.5)
        server.stop()
        raise RuntimeError(f"jupyter lab did not answer within {timeout_s} s:\n{log_path.read_text()[-3000:]}")

    def api(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Free the machine between notebooks (each kernel holds TensorFlow and its models)."""
        for kernel in self.api("GET", "/api/kernels"):
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def chrome(width: int = 1400, height: int = 1000):  # -> selenium.webdriver.Chrome
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to start its sandbox as root
    binary = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    options.binary_location = binary
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


# JavaScript run in the page; ``w`` is the notebook panel in front.
_PANEL = "const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
JS_READY = _PANEL + """
const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
return k ? {status: k.status, name: k.name, ready: w.context.isReady, path: w.context.path} : null;"""
JS_APP_LOADED = "return !!(window.jupyterapp && window.jupyterapp.shell);"
JS_OPEN = """window.jupyterapp.commands.execute('docmanager:open',
  {path: arguments[0], factory: 'Notebook', kernel: {name: arguments[1]}}); return true;"""
JS_RUN_ALL = "window.jupyterapp.commands.execute('notebook:run-all-cells'); return true;"
JS_STATE = _PANEL + """
const k = w.sessionContext.session && w.sessionContext.session.kernel;
const code = w.content.widgets.filter(c => c.model.type === 'code');
const running = code.filter(c => (c.promptNode ? c.promptNode.textContent : '').includes('*')).length;
const errors = [];
code.forEach((c, i) => c.model.outputs.toJSON().forEach(o => {
  if (o.output_type === 'error') errors.push({code_cell: i, ename: o.ename, evalue: o.evalue});
}));
const unrun = [];
code.forEach((c, i) => {
  if (c.model.executionCount === null && c.model.sharedModel.getSource().trim()) unrun.push(i); });
return {status: k ? k.status : 'none', running: running, errors: errors, unrun: unrun, cells: code.length,
        dashboards: document.querySelectorAll('.kit-dashboard').length};"""
JS_DOM_ERRORS = """
const found = [];
document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').forEach(e => {
  if (/Traceback|Error:/.test(e.innerText)) found.push(e.innerText.slice(0, 500));
});
document.querySelectorAll('.jp-OutputArea-output').forEach(e => {
  if (/Error displaying widget|Error rendering/.test(e.innerText)) found.push(e.innerText.slice(0, 200));
});
return found;"""
JS_EMPTY_WIDGETS = """
const empty = [];
document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]')
  .forEach((e, i) => { if (e.getBoundingClientRect().height < 5 || /Loading widget/.test(e.innerText))
    empty.push('widget view ' + i + ': ' + e.innerText.slice(0, 80)); });
document.querySelectorAll('.kit-interactive-output').forEach((e, i) => {
  if (!e.querySelector('.jp-OutputArea-child')) empty.push('kit.interactive output ' + i + ' is empty'); });
document.querySelectorAll('.kit-dashboard-figure').forEach((e, i) => {
  if (!(e.naturalWidth > 0)) empty.push('dashboard figure ' + i + ' has no picture'); });
return empty;"""
JS_DASHBOARD_IMAGES = """
return [...document.querySelectorAll('.kit-dashboard')].map(p => p.querySelectorAll('img').length);"""
JS_SAVE_AND_SHUT = _PANEL + """
const done = arguments[arguments.length - 1];
w.context.save().then(() => w.sessionContext.shutdown()).then(() => { w.dispose(); done(true); },
                                                                e => done(String(e)));"""


class LabPage:
    """One notebook open in the browser, driven as a researcher would."""

    def __init__(self, driver: Any, server: LabServer) -> None:
        self.driver, self.server = driver, server

    def open(self, name: str, kernel: str, timeout_s: float = 120) -> None:
        """Open ``name`` and wait for its kernel to be idle.

        The first notebook loads JupyterLab (``?reset``: no tabs restored from an earlier
        session); the next ones are opened in the same page (File > Open), which saves
        reloading the application for each notebook.
        """
        if self.driver.execute_script(JS_APP_LOADED):
            self.driver.execute_script(JS_OPEN, name, kernel)
        else:
            self.driver.get(f"{self.server.url}/lab/tree/{name}?reset&token={self.server.token}")
        deadline = time.monotonic() + timeout_s
        state = None
        while time.monotonic() < deadline:
            state = self.driver.execute_script(JS_READY)
            if state and state["path"] == name and state["ready"] and state["status"] == "idle":
                assert state["name"] == kernel, f"{name} started kernel {state['name']!r}, not {kernel!r}"
                return
            time.sleep(0.5)
        raise TimeoutError(f"{name}: no idle kernel after {timeout_s} s (last state {state})")

    def run_all(self, timeout_s: float = 600) -> dict[str, Any]:
        """Run > Run All Cells, then wait until nothing is queued and the kernel is idle (twice in a row).

        The state returned also says when the first dashboard appeared (``first_dashboard_at``,
        ``time.monotonic()``), so the 10 s a dashboard must stay one figure can overlap the run.
        """
        self.driver.execute_script(JS_RUN_ALL)
        time.sleep(1.0)
        deadline = time.monotonic() + timeout_s
        calm, first_dashboard_at = 0, None
        while time.monotonic() < deadline:
            state = self.driver.execute_script(JS_STATE)
            if first_dashboard_at is None and state["dashboards"]:
                first_dashboard_at = time.monotonic()
            calm = calm + 1 if state["running"] == 0 and state["status"] == "idle" else 0
            if calm >= 2:
                return {**state, "first_dashboard_at": first_dashboard_at or time.monotonic()}
            time.sleep(1.0)
        raise TimeoutError(f"Run All did not finish within {timeout_s} s: {self.driver.execute_script(JS_STATE)}")

    def state(self) -> dict[str, Any]:
        return self.driver.execute_script(JS_STATE)

    def dom_errors(self) -> list[str]:
        return self.driver.execute_script(JS_DOM_ERRORS)

    def empty_widgets(self) -> list[str]:
        return self.driver.execute_script(JS_EMPTY_WIDGETS)

    def dashboard_images(self) -> list[int]:
        return self.driver.execute_script(JS_DASHBOARD_IMAGES)

    def panels(self) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, ".kit-interactive")

    def text_of(self, element: Any) -> str:
        return self.driver.execute_script("return arguments[0].innerText;", element)

    def dashboards(self) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, ".kit-dashboard")

    def move_first_control(self, panel: Any, timeout_s: float = 120) -> tuple[str, str]:
        """Move the panel's first control as a person would; returns the output's HTML before and after.

        A dropdown gets its next option; a slider's handle gets the End key (then Home if End was
        where it stood). Where the panel has a "Run again" button (a slow function), it is clicked.
        """
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import Select

        output = panel.find_element(By.CSS_SELECTOR, ".kit-interactive-output")
        before = output.get_attribute("innerHTML")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", panel)
        selects = panel.find_elements(By.CSS_SELECTOR, "select")
        handles = panel.find_elements(By.CSS_SELECTOR, ".noUi-handle")
        if selects:
            select = Select(selects[0])
            current = select.first_selected_option.text
            options = [o.text for o in select.options]
            select.select_by_visible_text(options[(options.index(current) + 1) % len(options)])
        elif handles:
            handle = handles[0]
            start = handle.get_attribute("aria-valuenow")
            handle.click()
            handle.send_keys(Keys.END)
            if handle.get_attribute("aria-valuenow") == start:
                handle.send_keys(Keys.HOME)
        else:
            raise AssertionError("the interactive panel offers no dropdown or slider")
        for button in panel.find_elements(By.CSS_SELECTOR, "button"):
            if "Run again" in button.text:
                button.click()
        deadline = time.monotonic() + timeout_s
        after = before
        while time.monotonic() < deadline:
            time.sleep(1.0)
            after = output.get_attribute("innerHTML")
            busy = self.driver.execute_script(JS_STATE)["status"] != "idle"
            if after != before and not busy and "jp-OutputArea-child" in after:
                break
        return before, after

    def close(self) -> None:
        """Save (the executed copy stays in the test's folder), shut the kernel down; no unsaved-changes prompt."""
        try:
            self.driver.set_script_timeout(60)
            self.driver.execute_async_script(JS_SAVE_AND_SHUT)
        except Exception as exc:  # the REST shutdown below still frees the kernel
            log.debug("closing the notebook in the page failed: %s", exc)
        self.server.shutdown_kernels()

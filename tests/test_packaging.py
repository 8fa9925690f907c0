"""kit installs like a package: every room is packaged, notebooks ship as data, no Unix-only import."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_kit_folder_is_a_packaged_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    rooms = {"kit"} | {"kit." + p.parent.relative_to(ROOT / "kit").as_posix().replace("/", ".")
                       for p in (ROOT / "kit").rglob("__init__.py") if p.parent != ROOT / "kit"}
    assert set(config["packages"]) == rooms | {"kit.notebooks"}
    assert config["package-dir"] == {"kit.notebooks": "notebooks"}


def test_import_kit_works_where_fcntl_does_not_exist(tmp_path):
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import kit\nfrom kit.artifacts import locked\n"
            f"with locked(__import__('pathlib').Path({str(tmp_path)!r}) / 'x.lock'):\n    print('locked')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "locked" in out.stdout


@pytest.mark.slow
@pytest.mark.notebook
def test_kit_report_runs_from_a_non_editable_install_in_another_folder(tmp_path):
    wheels, target, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              *map(str, wheels.glob("kit-*.whl"))], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    # the installed copy comes first: the checkout is neither the working folder nor on the path
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import kit; print(kit.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env, timeout=120)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    run = subprocess.run([sys.executable, "-m", "kit.cli", "report", "--profile", "quick", "--notebooks", "00_engines",
                          "--out", str(work / "some" / "other")], capture_output=True, text=True, cwd=work, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert (work / "some" / "other" / "index.html").exists()
    assert (work / "some" / "other" / "00_engines.html").exists()

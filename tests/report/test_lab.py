"""The kit kernel's spec and the notebooks' kernelspec rewrite (only that key changes)."""

from __future__ import annotations

import json
import sys

from kit.report.lab import KERNEL_NAME, KERNELSPEC, kernel_json, set_kernelspec, write_kernel


def test_kernel_json_runs_this_interpreter_with_its_env(tmp_path):
    spec = kernel_json(env={"PYTHONPATH": "/x"})
    assert spec["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"] and spec["env"] == {"PYTHONPATH": "/x"}
    path = write_kernel(tmp_path / "kernels")
    assert path.name == KERNEL_NAME and json.loads((path / "kernel.json").read_text())["language"] == "python"


def test_set_kernelspec_changes_only_the_kernelspec(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 'é'"], "metadata": {}, "outputs": [],
                     "execution_count": None}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert set_kernelspec(path) is True
    assert set_kernelspec(path) is False  # idempotent
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["metadata"]["kernelspec"] == KERNELSPEC
    assert written["cells"] == nb["cells"] and written["metadata"]["language_info"] == {"name": "python"}

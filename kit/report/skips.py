"""Sections and notebooks that do not apply to a model say so, with a reason, instead of failing.

A user's ONNX model has no SavedModel, a ``.tflite`` has no ONNX, a model with a fixed batch of 1
cannot be batched: the parts of a notebook that need those print ``skipped: <reason>`` and are
listed in the report index, and the rest of the notebook runs. A notebook with nothing that
applies calls ``skip_notebook``: the runner records it as ``skipped``, not ``failed``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kit.artifacts import atomic_write_bytes
from kit.errors import KitError

RESULTS_ENV = "KIT_RESULTS_PATH"  # the same variable kit.report.publish writes to


class NotebookSkipped(KitError):
    """Nothing in this notebook applies to the model; the message says why."""


def _record(key: str, name: str, reason: str) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    target = Path(path)
    existing = json.loads(target.read_text()) if target.exists() else {"headline": {}, "tables": {}}
    existing.setdefault(key, {})[name] = reason
    atomic_write_bytes(target, json.dumps(existing, indent=2).encode("utf-8"))


def skip_section(section: str, reason: str) -> None:
    """Print ``skipped: <reason>`` under a section and list it in the report's index."""
    print(f"{section}: skipped: {reason}")
    _record("skipped_sections", section, reason)


def skip_notebook(reason: str) -> None:
    """Stop the notebook here: nothing in it applies (the index shows ``skipped`` and the reason)."""
    _record("skipped_sections", "whole notebook", reason)
    raise NotebookSkipped(reason)

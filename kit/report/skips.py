"""Sections and notebooks that do not apply to a model say so, with a reason, instead of failing.

A user's ONNX model has no SavedModel, a ``.tflite`` has no ONNX, a model with a fixed batch of 1
cannot be batched: the parts of a notebook that need those print ``skipped: <reason>`` and are
listed in the report index, and the rest of the notebook runs. A notebook with nothing that
applies calls ``skip_notebook``: the runner records it as ``skipped``, not ``failed``.
"""

from __future__ import annotations

from kit.errors import KitError
from kit.report.publish import update_results


class NotebookSkipped(KitError):
    """Nothing in this notebook applies to the model; the message says why."""


def _record(name: str, reason: str) -> None:
    def add(results: dict) -> None:
        results.setdefault("skipped_sections", {})[name] = reason

    update_results(add)


def skip_section(section: str, reason: str) -> None:
    """Print ``skipped: <reason>`` under a section and list it in the report's index."""
    print(f"{section}: skipped: {reason}")
    _record(section, reason)


def skip_notebook(reason: str) -> None:
    """Stop the notebook here: nothing in it applies (the index shows ``skipped`` and the reason)."""
    _record("whole notebook", reason)
    raise NotebookSkipped(reason)

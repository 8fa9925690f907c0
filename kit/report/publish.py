"""What a notebook hands to its report: headline figures and tables, plus widgets or not.

Under ``kit report`` the runner sets ``KIT_RESULTS_PATH``; ``publish`` then merges the
figures into that JSON file beside the HTML. Interactively it only returns them, so the
same notebook code serves both.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kit.artifacts import atomic_write_bytes

RESULTS_ENV = "KIT_RESULTS_PATH"
HEADLESS_ENV = "KIT_HEADLESS"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame
        return json.loads(value.to_json(orient="records", default_handler=str))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def publish(headline: Mapping[str, Any] | None = None, **tables: Any) -> dict[str, Any]:
    """Record headline figures (shown in the report index) and tables for this notebook."""
    record = {"headline": _jsonable(dict(headline or {})), "tables": _jsonable(tables)}
    path = os.environ.get(RESULTS_ENV)
    if path:
        target = Path(path)
        existing = json.loads(target.read_text()) if target.exists() else {"headline": {}, "tables": {}}
        existing["headline"].update(record["headline"])
        existing["tables"].update(record["tables"])
        atomic_write_bytes(target, json.dumps(existing, indent=2).encode("utf-8"))
    return record


def is_headless() -> bool:
    """True under papermill/``kit report`` or outside a Jupyter front end."""
    if os.environ.get(HEADLESS_ENV):
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return True
    shell = get_ipython()
    return shell is None or type(shell).__name__ != "ZMQInteractiveShell"


def interactive(fn: Callable[..., Any], **controls: Any) -> Any:
    """Run ``fn`` with its defaults headless; in JupyterLab, offer ``controls`` as widgets.

    ``controls`` are ipywidgets ``interact`` abbreviations (``(1, 64, 1)``, a list, a
    widget) for some of ``fn``'s keyword arguments; one code path, two presentations.
    """
    if is_headless():
        return fn()
    import ipywidgets

    defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}
    widgets = {}
    for name, abbrev in controls.items():
        widget = ipywidgets.interactive(lambda **_: None, **{name: abbrev}).children[0]
        if name in defaults:
            try:
                widget.value = defaults[name]
            except Exception:  # a default outside the control's range keeps the control's own
                pass
        widgets[name] = widget
    ipywidgets.interact_manual(fn, **widgets)
    return None

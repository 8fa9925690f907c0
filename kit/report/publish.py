"""What a notebook hands to its report (``publish``, ``finding``), and its interactive cells (``interactive``).

Under ``kit report`` the runner sets ``KIT_RESULTS_PATH``; ``publish`` then merges the
figures into that JSON file beside the HTML. Interactively it records nothing, so the
same notebook code serves both.

``interactive`` is one code path with two presentations: headless (papermill, scripts) it
calls the function once with its defaults, so the report keeps that static result; with a
person at JupyterLab it shows the same result at once, under controls that re-run the
function when they move. Either way it returns the value of the function at its defaults,
so the cells below see the same objects in both worlds.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from kit.artifacts import atomic_write_bytes
from kit.profile.figures import Figure

log = logging.getLogger(__name__)

RESULTS_ENV = "KIT_RESULTS_PATH"
HEADLESS_ENV = "KIT_HEADLESS"
SLOW_CALL_S = 3.0
"""A function slower than this (at its first call) gets a run button instead of re-running on every move."""
PANEL_CLASS, OUTPUT_CLASS = "kit-interactive", "kit-interactive-output"
"""CSS classes on the live panel and its output area: a browser test (and a user's CSS) can find them."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, Figure):  # a figure with its spread: {"value", "low", "high", "n", "unit", "better"}
        return _jsonable(value.to_json())
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


def update_results(update: Callable[[dict[str, Any]], None]) -> Path | None:
    """Apply ``update`` to this notebook's results JSON and write it back; the file's path.

    Only under ``kit report`` (which sets ``KIT_RESULTS_PATH``); otherwise nothing is recorded and
    this returns None. ``publish`` and ``kit.report.skips`` both record through here.
    """
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return None
    target = Path(path)
    existing = json.loads(target.read_text()) if target.exists() else {"headline": {}, "tables": {}}
    update(existing)
    atomic_write_bytes(target, json.dumps(existing, indent=2).encode("utf-8"))
    return target


def publish(headline: Mapping[str, Any] | None = None, **tables: Any) -> None:
    """Record headline figures (shown in the report index) and tables for this notebook.

    A timing is best published as a ``kit.Figure`` (``Figure.from_rounds(per_round_values,
    unit="ms", better="lower")``): its median, its range over rounds, n, unit and direction
    go into the results, and ``kit compare`` judges noise from them instead of a flat floor.
    Returns None and prints one short line: a notebook's last cell usually calls it, and
    echoing the whole record there made pages thousands of pixels tall.
    """
    record = {"headline": _jsonable(dict(headline or {})), "tables": _jsonable(tables)}

    def merge(existing: dict[str, Any]) -> None:
        existing["headline"].update(record["headline"])
        existing["tables"].update(record["tables"])

    path = update_results(merge)
    where = f"recorded in {path.name}" if path else "recorded only under `kit report`"
    print(f"published {len(record['headline'])} headline figures and {len(record['tables'])} tables ({where})")


def finding(text: str) -> None:
    """Print one measured result as a sentence, and list it under the notebook in the report index.

    A notebook states what it found with ``kit.finding(f"... {p50:.3g} ms ...")`` where it used to
    ``print`` it: the reader of the index sees the same sentence, with its units, not a raw key.
    Under ``kit report`` the sentence is appended to ``"findings"`` in the results JSON (a sentence
    already there is not repeated); interactively it is only printed.
    """
    sentence = str(text)
    print(sentence)

    def add(existing: dict[str, Any]) -> None:
        found = existing.setdefault("findings", [])
        if sentence not in found:
            found.append(sentence)

    update_results(add)


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


def offered(abbrev: Any) -> bool:
    """Whether a control abbreviation can change anything: ``None``, one choice or an empty range cannot.

    So a notebook passes every control it has, with ``None`` (or a one-value list) where the
    control does not matter for its model, and ``interactive`` leaves those out.
    """
    if abbrev is None:
        return False
    if isinstance(abbrev, tuple) and len(abbrev) in (2, 3) and all(isinstance(v, (int, float)) for v in abbrev):
        return abbrev[1] > abbrev[0]
    if isinstance(abbrev, (list, tuple, dict)):
        return len({repr(v) for v in (abbrev.values() if isinstance(abbrev, dict) else abbrev)}) > 1
    return True


def _decimals(step: float) -> int:
    """Digits after the point that ``step`` needs (0.001 -> 3, 0.5 -> 1, 5 -> 0)."""
    exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


def _control(name: str, abbrev: Any, default: Any) -> Any:
    """An ipywidgets control for one abbreviation, with a label that fits and a readout at the step's precision."""
    import ipywidgets

    if isinstance(abbrev, ipywidgets.Widget):
        widget = abbrev
    else:
        widget = ipywidgets.interactive.widget_from_abbrev(abbrev, default)
        if widget is None:
            raise ValueError(f"{abbrev!r} cannot be turned into a control for {name!r}")
        if default is not inspect.Parameter.empty:
            try:
                widget.value = default
            except Exception:  # a default outside the control's range keeps the control's own
                log.debug("default %r of %s is outside its control", default, name)
    if not getattr(widget, "description", None):
        widget.description = name
    widget.style.description_width = "initial"
    if hasattr(widget, "continuous_update"):
        widget.continuous_update = False  # one re-run when the slider is let go, not one per pixel
    if isinstance(widget, (ipywidgets.FloatSlider, ipywidgets.FloatRangeSlider)):
        widget.readout_format = f".{_decimals(widget.step)}f"
    return widget


def interactive(fn: Callable[..., Any], on_change: Callable[[Any], None] | None = None, **controls: Any) -> Any:
    """Call ``fn`` with its defaults and return its value; in JupyterLab, also offer ``controls``.

    ``controls`` are ipywidgets ``interact`` abbreviations (``(1, 64, 1)``, a list, a widget)
    for some of ``fn``'s keyword arguments; a control that cannot change anything (``None``,
    one choice) is not offered (see ``offered``). Live, the first result shows at once and
    every move of a control re-runs ``fn`` into the same output area; a function that took
    longer than ``SLOW_CALL_S`` gets a button that says how long a run takes instead. The
    return value stays the one at the defaults (later cells were computed from it);
    ``on_change`` receives each new value for whoever wants it.
    """
    if is_headless():
        return fn()
    import ipywidgets
    from IPython.display import display

    params = inspect.signature(fn).parameters
    widgets = {name: _control(name, abbrev, params[name].default if name in params else inspect.Parameter.empty)
               for name, abbrev in controls.items() if offered(abbrev)}
    dropped = sorted(set(controls) - set(widgets))
    if dropped:
        log.info("%s: not offering %s (nothing to choose)", getattr(fn, "__name__", fn), dropped)
    if not widgets:
        return fn()
    out = ipywidgets.Output()
    out.add_class(OUTPUT_CLASS)
    start = time.perf_counter()
    failure: Exception | None = None
    with out:  # an Output widget swallows what is raised inside it: fail the cell as headless does
        try:
            value = fn()
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure
    seconds = time.perf_counter() - start

    def rerun(*_: Any) -> None:
        out.clear_output(wait=True)
        done = False
        with out:  # a failure here shows its traceback in the output area, where the person looks
            new = fn(**{name: w.value for name, w in widgets.items()})
            done = True
        if done and on_change is not None:
            on_change(new)

    children: list[Any] = list(widgets.values())
    if seconds > SLOW_CALL_S:
        button = ipywidgets.Button(description=f"Run again (takes ~{seconds:.0f} s)",
                                   layout=ipywidgets.Layout(width="auto"))
        button.on_click(rerun)
        children.append(button)
    else:
        for widget in widgets.values():
            widget.observe(rerun, names="value")
    panel = ipywidgets.VBox([*children, out])
    panel.add_class(PANEL_CLASS)
    display(panel)
    return value

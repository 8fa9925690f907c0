"""A monitoring dashboard over a ``MetricsRecorder``: live widgets in JupyterLab, static plots headless.

One code path, two presentations (as ``kit.interactive``): with a person at JupyterLab, ``show()``
returns an ipywidgets panel (a status line, a table of the recorder's frame and ONE figure, an
``Image`` widget redrawn in place) that a background thread refreshes every ``refresh_s`` seconds
while something new was recorded. It stops on its own: after ``duration_s``, when every one of
its ``sources`` is closed, or when nothing new has been recorded for ``idle_s``; a page never
grows and a kernel never keeps a thread for a recorder nobody feeds. Under papermill or ``kit
report`` ``show()`` returns one matplotlib figure of the same plots, which the HTML report keeps.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from kit.errors import ConfigError
from kit.profile.metrics import LABELS, MetricsRecorder
from kit.report.publish import is_headless

log = logging.getLogger(__name__)
PANEL_CLASS, FIGURE_CLASS = "kit-dashboard", "kit-dashboard-figure"
"""CSS classes on the live panel and its one figure, for a browser test to find."""


def _series_name(row: Any) -> str:
    parts = [str(row[k]) for k in LABELS if str(row[k])]
    return "/".join(parts) or "all"


def plot_metrics(recorder: MetricsRecorder, fig: Any = None, frame: Any = None):  # -> matplotlib.figure.Figure
    """Latency percentiles, requests and errors, and recent latency per label set, in one figure.

    ``frame`` is ``recorder.to_frame()`` when the caller already has it (reading one polls every
    watched ``stats()``).
    """
    import numpy as np
    from matplotlib.figure import Figure

    frame = recorder.to_frame() if frame is None else frame
    if fig is None:
        # not pyplot: the live panel draws from a background thread, and a pyplot-free figure is
        # neither shown a second time by the inline backend nor kept in pyplot's global list
        fig = Figure(figsize=(13, 3.8))
    fig.clear()
    axes = fig.subplots(1, 3)
    if frame.empty:
        for ax in axes:
            ax.set_axis_off()
        fig.suptitle("no requests recorded yet")
        return fig
    names = [_series_name(row) for _, row in frame.iterrows()]
    x = np.arange(len(frame))
    for i, col in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        axes[0].bar(x + (i - 1) * 0.27, frame[col], width=0.27, label=col.split("_")[0])
    axes[0].set_xticks(x, names, rotation=20, ha="right", fontsize="small")
    axes[0].set_ylabel("latency (ms)")
    axes[0].set_title("latency percentiles")
    axes[0].legend(fontsize="small")
    axes[1].bar(x - 0.2, frame["requests"], width=0.4, label="requests")
    axes[1].bar(x + 0.2, frame["errors"], width=0.4, label="errors", color="tab:red")
    axes[1].set_xticks(x, names, rotation=20, ha="right", fontsize="small")
    axes[1].set_ylabel("count (requests)")
    axes[1].set_title("requests and errors")
    axes[1].legend(fontsize="small")
    for name, (_, row) in zip(names, frame.iterrows()):
        latencies = np.asarray(recorder.latencies(recorder.labels(*(row[k] for k in LABELS)))) * 1e3
        if latencies.size:
            axes[2].plot(np.arange(latencies.size), latencies, lw=0.8, alpha=0.8, label=name)
    axes[2].set_xlabel("request (recent window)")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_title("recent latency")
    axes[2].legend(fontsize="small")
    worst = frame.loc[frame["p95_ms"].idxmax()] if frame["p95_ms"].notna().any() else None
    total, errors = int(frame["requests"].sum()), int(frame["errors"].sum())
    headline = f"{total} requests, {errors} errors"
    if worst is not None:
        headline += f"; slowest p95: {_series_name(worst)} at {worst['p95_ms']:.2f} ms"
    fig.suptitle(headline)
    fig.tight_layout()
    return fig


class Dashboard:
    """Monitoring of one recorder; ``show()`` returns what to display (a widget panel or a figure).

    ``sources`` are the stacks that feed the recorder (anything with a ``closed`` attribute):
    the live panel stops once all of them are closed.
    """

    def __init__(self, recorder: MetricsRecorder, refresh_s: float = 1.0, duration_s: float | None = 120.0,
                 sources: Iterable[Any] = (), idle_s: float | None = 30.0) -> None:
        if not refresh_s > 0:
            raise ConfigError(f"refresh_s must be > 0, got {refresh_s}")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"duration_s must be > 0 or None (until stop()), got {duration_s}")
        if idle_s is not None and not idle_s > 0:
            raise ConfigError(f"idle_s must be > 0 or None (never stop for idleness), got {idle_s}")
        self.recorder = recorder
        self.refresh_s = refresh_s
        self.duration_s = duration_s
        self.idle_s = idle_s
        self.sources = list(sources)
        self.stopped_because: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widgets: Any = None
        self._drawn: Any = None

    def show(self, headless: bool | None = None):
        """Static figure when headless (papermill, scripts), else a live ipywidgets panel."""
        if is_headless() if headless is None else headless:
            return plot_metrics(self.recorder)
        return self._live()

    def _live(self):
        import ipywidgets as widgets

        self.stop()
        status, table = widgets.HTML(), widgets.HTML()
        image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        image.add_class(FIGURE_CLASS)
        button = widgets.Button(description="Stop", tooltip="stop refreshing")
        button.on_click(lambda _: self.stop("stopped by the button"))
        self._widgets = (status, table, image)
        self._drawn = None
        self.stopped_because = None
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kit-dashboard", daemon=True)
        self._thread.start()
        self._status(f"live: refreshing every {self.refresh_s:g} s" + (
            f" for up to {self.duration_s:g} s" if self.duration_s is not None else ""))
        panel = widgets.VBox([widgets.HBox([button, status]), table, image])
        panel.add_class(PANEL_CLASS)
        return panel

    def _status(self, text: str) -> None:
        if self._widgets is not None:
            self._widgets[0].value = f"<small>{text}</small>"

    def refresh(self) -> None:
        """Redraw the live panel now if anything was recorded since the last drawing (a no-op before ``show()``)."""
        if self._widgets is None:
            return
        _, table, image = self._widgets
        frame = self.recorder.to_frame()
        drawn = tuple(frame["requests"]) + tuple(frame["errors"]) if not frame.empty else ()
        if drawn == self._drawn:
            return
        self._drawn = drawn
        table.value = frame.drop(columns=["error_types"]).to_html(index=False, float_format=lambda v: f"{v:.3g}",
                                                                  na_rep="")
        png = io.BytesIO()
        plot_metrics(self.recorder, frame=frame).savefig(png, format="png", dpi=72)
        image.value = png.getvalue()  # the same image, new pixels: the page never grows

    def _why_stop(self, started: float, last_change: float) -> str | None:
        now = time.monotonic()
        if self.duration_s is not None and now - started >= self.duration_s:
            return f"stopped after {self.duration_s:g} s"
        if self.sources and all(getattr(s, "closed", False) for s in self.sources):
            return "stopped: its sources are closed"
        if self.idle_s is not None and now - last_change >= self.idle_s:
            return f"stopped: nothing new recorded for {self.idle_s:g} s"
        return None

    def _loop(self) -> None:
        started = last_change = time.monotonic()
        while not self._stop.wait(self.refresh_s):
            before = self._drawn
            try:
                self.refresh()
            except Exception as exc:  # a recorder that fails to read must not kill the kernel's thread silently
                log.warning("dashboard refresh failed: %s", exc)
                self.stopped_because = f"stopped: refresh failed ({type(exc).__name__})"
                break
            if self._drawn != before:
                last_change = time.monotonic()
            why = self._why_stop(started, last_change)
            if why:
                self.stopped_because = why
                break
        self._status(self.stopped_because or "stopped")
        log.debug("dashboard %s", self.stopped_because)

    def stop(self, why: str = "stopped") -> None:
        """Stop refreshing; the panel keeps its last picture."""
        thread, self._thread = self._thread, None
        if thread is not None and self.stopped_because is None:
            self.stopped_because = why
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

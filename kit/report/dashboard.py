"""A monitoring dashboard over a ``MetricsRecorder``: live widgets in JupyterLab, static plots headless.

One code path, two presentations (as ``kit.interactive``): with a person at JupyterLab, ``show()``
returns an ipywidgets panel that a background thread refreshes every ``refresh_s`` seconds (a
table of the recorder's frame and the plots), until ``stop()`` or ``duration_s``; under papermill or
``kit report`` it returns one matplotlib figure of the same plots, drawn from the figures recorded
so far, which the HTML report keeps.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kit.errors import ConfigError
from kit.profile.metrics import LABELS, MetricsRecorder
from kit.report.publish import is_headless


def _series_name(row: Any) -> str:
    parts = [str(row[k]) for k in LABELS if str(row[k])]
    return "/".join(parts) or "all"


def plot_metrics(recorder: MetricsRecorder, fig: Any = None, frame: Any = None):  # -> matplotlib.figure.Figure
    """Latency percentiles, requests and errors, and recent latency per label set, in one figure.

    ``frame`` is ``recorder.to_frame()`` when the caller already has it (reading one polls every
    watched ``stats()``).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    frame = recorder.to_frame() if frame is None else frame
    if fig is None:
        fig = plt.figure(figsize=(13, 3.8))
        plt.close(fig)  # returned for display; not shown a second time by the inline backend
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
    """Monitoring of one recorder; ``show()`` returns what to display (a widget panel or a figure)."""

    def __init__(self, recorder: MetricsRecorder, refresh_s: float = 1.0, duration_s: float | None = 600.0) -> None:
        if not refresh_s > 0:
            raise ConfigError(f"refresh_s must be > 0, got {refresh_s}")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"duration_s must be > 0 or None (until stop()), got {duration_s}")
        self.recorder = recorder
        self.refresh_s = refresh_s
        self.duration_s = duration_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._widgets: Any = None

    def show(self, headless: bool | None = None):
        """Static figure when headless (papermill, scripts), else a live ipywidgets panel."""
        if is_headless() if headless is None else headless:
            return plot_metrics(self.recorder)
        return self._live()

    def _live(self):
        import ipywidgets as widgets

        self.stop()
        table, plot = widgets.HTML(), widgets.Output()
        button = widgets.Button(description="Stop", tooltip="stop refreshing")
        button.on_click(lambda _: self.stop())
        self._widgets = (table, plot)
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kit-dashboard", daemon=True)
        self._thread.start()
        return widgets.VBox([button, table, plot])

    def refresh(self) -> None:
        """Redraw the live panel now (a no-op before ``show()`` made one)."""
        if self._widgets is None:
            return
        table, plot = self._widgets
        frame = self.recorder.to_frame()
        table.value = frame.drop(columns=["error_types"]).to_html(index=False, float_format=lambda v: f"{v:.3g}",
                                                                  na_rep="")
        plot.clear_output(wait=True)
        plot.append_display_data(plot_metrics(self.recorder, frame=frame))

    def _loop(self) -> None:
        deadline = None if self.duration_s is None else time.monotonic() + self.duration_s
        while not self._stop.wait(self.refresh_s):
            self.refresh()
            if deadline is not None and time.monotonic() >= deadline:
                break

    def stop(self) -> None:
        """Stop refreshing; the panel keeps its last picture."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

"""Dashboard: a static figure headless, a live panel that refreshes and stops otherwise."""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from kit.errors import ConfigError  # noqa: E402
from kit.profile.metrics import MetricsRecorder  # noqa: E402
from kit.report.dashboard import Dashboard  # noqa: E402


def _recorder() -> MetricsRecorder:
    recorder = MetricsRecorder()
    for i in range(50):
        recorder.record(0.001 + i * 1e-5, labels=recorder.labels("digits", "1", "onnxruntime"))
    recorder.record(0.01, error=RuntimeError("x"), labels=recorder.labels("digits", "1", "onnxruntime"))
    return recorder


def test_headless_dashboard_is_a_static_figure():
    fig = Dashboard(_recorder()).show(headless=True)
    assert len(fig.axes) == 3
    assert fig.axes[0].get_ylabel() == "latency (ms)"
    assert "51 requests, 1 errors" in fig._suptitle.get_text()
    empty = Dashboard(MetricsRecorder()).show(headless=True)
    assert "no requests" in empty._suptitle.get_text()


def test_live_dashboard_refreshes_until_stopped():
    recorder = _recorder()
    dashboard = Dashboard(recorder, refresh_s=0.05)
    panel = dashboard.show(headless=False)
    table, image = panel.children[1], panel.children[2]
    first = bytes(image.value)
    assert first.startswith(b"\x89PNG")
    assert "digits" in table.value
    recorder.record(0.002, labels=recorder.labels("other"))
    deadline = time.monotonic() + 5
    while ("other" not in table.value or bytes(image.value) == first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "other" in table.value
    assert bytes(image.value) != first  # one image, redrawn in place
    dashboard.stop()
    assert dashboard._thread is None
    with pytest.raises(ConfigError):
        Dashboard(recorder, refresh_s=0)


class _Source:
    closed = False


def test_live_dashboard_stops_on_its_own():
    recorder = _recorder()
    source = _Source()
    dashboard = Dashboard(recorder, refresh_s=0.02, sources=[source], idle_s=None)
    dashboard.show(headless=False)
    thread = dashboard._thread
    source.closed = True
    thread.join(timeout=5)
    assert not thread.is_alive() and "closed" in dashboard.stopped_because
    idle = Dashboard(recorder, refresh_s=0.02, idle_s=0.1)
    idle.show(headless=False)
    idle._thread.join(timeout=5)
    assert "nothing new" in idle.stopped_because
    bounded = Dashboard(recorder, refresh_s=0.02, duration_s=0.1, idle_s=None)
    bounded.show(headless=False)
    bounded._thread.join(timeout=5)
    assert "after" in bounded.stopped_because

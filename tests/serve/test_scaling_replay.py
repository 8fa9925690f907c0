"""Replaying readings through the pure policy, the step-load phases, and pools compared under one load."""

from __future__ import annotations

import pytest
from serve_fakes import Scripted, feeds

from kit.errors import ConfigError
from kit.serve.scaling import Readings, ScalerState, ScalingConfig, decide
from kit.serve.scaling_replay import compare_pools, readings_from_trace, replay, step_phases, summary_row

CONFIG = ScalingConfig(min_workers=1, max_workers=3, interval_s=0.1, queue_high=2.0, queue_low=0.25, up_after=2,
                       down_after=3, cooldown_s=0.0, cpu_high_percent=None, memory_high_percent=None)


def _readings() -> list[Readings]:
    pattern = [(0, 0.2)] * 2 + [(6, 1.0)] * 4 + [(0, 0.1)] * 8
    return [Readings(time_s=round(0.1 * t, 3), cpu_percent=40.0, memory_percent=50.0, queue_length=q,
                     busy_workers=b) for t, (q, b) in enumerate(pattern)]


def test_replay_is_the_policy_applied_in_order_and_counts_its_changes():
    result = replay(_readings(), CONFIG)
    state, expected = ScalerState(workers=1), []
    for r in _readings():
        d = decide(r, state, CONFIG)
        state = d.state
        expected.append(d)
    assert list(result.decisions) == expected
    actions = [d.action for d in result.decisions]
    assert "up" in actions and "down" in actions and actions.index("up") < actions.index("down")
    assert result.changes == sum(a != "hold" for a in actions) and max(result.workers) > 1
    assert result.time_s == [r.time_s for r in _readings()]


def test_a_calmer_setting_changes_the_size_less_often():
    calm = ScalingConfig(**{**CONFIG.__dict__, "up_after": 10, "down_after": 10})
    assert replay(_readings(), calm).changes < replay(_readings(), CONFIG).changes


def test_readings_survive_a_trip_through_the_trace_frame():
    frame = replay(_readings(), CONFIG).to_frame()
    assert {"action", "workers", "reason"} <= set(frame.columns)
    back = readings_from_trace(frame)
    assert back == _readings()  # p95_latency_ms None -> NaN in the frame -> None again
    assert replay(back, CONFIG).workers == replay(_readings(), CONFIG).workers
    with pytest.raises(ConfigError, match="queue_length"):
        readings_from_trace(frame.drop(columns=["queue_length"]))


def test_step_phases_size_the_load_from_one_worker_s_service_time():
    assert step_phases(10.0, 0.5, 2.0, [1, 2, 3]) == [(50.0, 1.0), (200.0, 2.0), (50.0, 3.0)]
    for args in [(0.0, 0.5, 2.0, [1, 2, 3]), (10.0, 2.0, 0.5, [1, 2, 3]), (10.0, 0.5, 2.0, [1, 2]),
                 (10.0, 0.5, 2.0, [1, 0, 3])]:
        with pytest.raises(ConfigError):
            step_phases(*args)


def test_compare_pools_sends_the_same_arrivals_to_each_pool_and_leaves_the_predictor_open():
    inner = Scripted()
    fixed = ScalingConfig(min_workers=1, max_workers=1, interval_s=0.05)
    results = compare_pools(inner, feeds(), {"adaptive": CONFIG, "fixed": fixed},
                            [(40.0, 0.1), (80.0, 0.1), (40.0, 0.1)], seed=3, drain_timeout_s=5)
    assert list(results) == ["adaptive", "fixed"]
    a, f = (summary_row(results[k]) for k in ("adaptive", "fixed"))
    assert a["requests"] == f["requests"] > 0 and {"max_workers_used", "scale_ups", "scale_downs"} <= set(a)
    assert inner.predict(feeds())["y"].shape == (1, 4)  # still usable: the caller owns it


def test_rounds_summary_keeps_each_pools_p99_range_over_rounds():
    import pandas as pd

    from kit.profile.figures import Figure
    from kit.serve.scaling_replay import rounds_summary

    rows = pd.DataFrame([
        {"scenario": "s", "pool": "adaptive", "round": 0, "p50_ms": 1.0, "p95_ms": 5.0, "p99_ms": 60.0,
         "max_workers_used": 2, "scale_ups": 1},
        {"scenario": "s", "pool": "fixed", "round": 0, "p50_ms": 2.0, "p95_ms": 9.0, "p99_ms": 900.0,
         "max_workers_used": 1, "scale_ups": 0},
        {"scenario": "s", "pool": "adaptive", "round": 1, "p50_ms": 3.0, "p95_ms": 7.0, "p99_ms": 80.0,
         "max_workers_used": 3, "scale_ups": 2},
        {"scenario": "s", "pool": "fixed", "round": 1, "p50_ms": 2.0, "p95_ms": 9.0, "p99_ms": 1000.0,
         "max_workers_used": 1, "scale_ups": 0},
    ])
    out = rounds_summary(rows, ["scenario", "pool"]).set_index("pool")
    assert list(out.index) == ["adaptive", "fixed"]
    assert out.loc["adaptive", "p99_ms"] == 70.0 and out.loc["adaptive", "p50_ms"] == 2.0
    assert (out.loc["adaptive", "p99_low_ms"], out.loc["adaptive", "p99_high_ms"]) == (60.0, 80.0)
    assert out.loc["adaptive", "max_workers_used"] == 3 and out.loc["adaptive", "scale_ups"] == 1  # first round's
    assert out.loc["adaptive", "rounds"] == 2
    fig = Figure.from_columns(out.loc["adaptive"], "p99_ms", "ms", "lower")
    assert (fig.value, fig.low, fig.high, fig.n) == (70.0, 60.0, 80.0, 2)


def test_rounds_summary_refuses_rows_without_p99():
    import pandas as pd
    import pytest

    from kit.errors import ConfigError
    from kit.serve.scaling_replay import rounds_summary

    with pytest.raises(ConfigError, match="p99_ms"):
        rounds_summary(pd.DataFrame([{"pool": "a"}]), ["pool"])

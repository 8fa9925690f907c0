"""Load generator: scenarios, warm-up, duration and count, generator lag, errors, rate search."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kit.engines.base import PredictorBase
from kit.errors import ConfigError, InferenceError
from kit.profile.loadgen import _schedule, run
from kit.profile.results import summary_frame
from kit.profile.scenarios import Concurrency, LoadConfig, Offline, Server, SingleStream, Steps
from kit.profile.search import concurrency_sweep, find_max_rate, knee
from kit.specs import TensorSpec


class Sleeper(PredictorBase):
    """Sleep-based fake engine that counts calls and the most calls it saw at once."""

    name = "sleeper"

    def __init__(self, delay_s: float = 0.001, fail_every: int = 0) -> None:
        self._input_specs = (TensorSpec("x", np.float32, ("batch", 4)),)
        self._output_specs = (TensorSpec("y", np.float32, ("batch", 4)),)
        self.delay_s, self.fail_every = delay_s, fail_every
        self.calls = 0
        self.active = 0
        self.peak = 0
        self.batch_sizes: set[int] = set()
        self._lock = threading.Lock()

    def predict(self, feeds):
        with self._lock:
            self.calls += 1
            call = self.calls
            self.active += 1
            self.peak = max(self.peak, self.active)
        self.batch_sizes.add(feeds["x"].shape[0])
        time.sleep(self.delay_s)
        with self._lock:
            self.active -= 1
        if self.fail_every and call % self.fail_every == 0:
            raise InferenceError("engine hiccup")
        return {"y": feeds["x"]}


QUICK = LoadConfig(warmup_queries=5, min_duration_s=0.1, min_queries=30)


def test_single_stream_counts_warmup_apart_and_reaches_duration_and_count():
    engine = Sleeper(delay_s=0.001)
    result = run(engine, SingleStream(), config=LoadConfig(warmup_queries=7, min_duration_s=0.05, min_queries=20))
    summary = result.summary()
    span = float(result.done_s.max() - result.sent_s.min())  # the stop rule reads the wall clock
    assert summary["queries"] >= 20 and span >= 0.05
    assert result.duration_s <= span  # single stream reports the time spent inside predict
    assert engine.calls == summary["queries"] + 7  # warm-up sent, not counted
    assert engine.peak == 1 and summary["p90_ms"] >= 1.0  # sleeping 1 ms takes at least 1 ms
    assert summary["scenario"] == "single_stream" and result.valid and summary["cpu_ms_per_sample"] >= 0


def test_max_queries_caps_a_run():
    engine = Sleeper(delay_s=0.0)
    result = run(engine, SingleStream(), config=LoadConfig(warmup_queries=0, min_duration_s=60, min_queries=10,
                                                            max_queries=10))
    assert result.summary()["queries"] == 10 and engine.calls == 10


def test_concurrency_keeps_n_clients_in_flight():
    engine = Sleeper(delay_s=0.005)
    result = run(engine, Concurrency(concurrency=6), config=QUICK)
    assert engine.peak == 6
    assert result.summary()["queries"] >= 30 and result.summary()["concurrency"] == 6
    np.testing.assert_array_equal(result.send_lag_s, 0.0)  # closed loop: sent when scheduled


def test_offline_reports_samples_per_second_from_batched_queries():
    engine = Sleeper(delay_s=0.001)
    result = run(engine, Offline(batch_size=8), config=QUICK)
    summary = result.summary()
    assert engine.batch_sizes == {8} and result.samples_per_query == 8
    assert summary["samples_per_s"] == pytest.approx(summary["qps"] * 8)


def test_feeds_may_be_a_sequence_or_a_function_of_the_query_index():
    seen = []
    engine = Sleeper(delay_s=0.0)
    pool = [{"x": np.full((1, 4), i, np.float32)} for i in range(3)]
    run(engine, SingleStream(), feeds=pool, config=LoadConfig(warmup_queries=0, min_duration_s=0, min_queries=6,
                                                               max_queries=6))
    run(engine, SingleStream(), feeds=lambda i: seen.append(i) or pool[0],
        config=LoadConfig(warmup_queries=2, min_duration_s=0, min_queries=3, max_queries=3))
    assert seen == [0, 1, 2, 3, 4]  # warm-up queries 0-1, then 3 measured
    with pytest.raises(ConfigError, match="empty"):
        run(engine, SingleStream(), feeds=[])


def test_poisson_schedule_has_the_target_rate_and_covers_warmup_plus_duration():
    config = LoadConfig(warmup_queries=50, min_duration_s=2.0, min_queries=100, seed=3)
    offsets = _schedule(Server(target_qps=500.0), config)
    gaps = np.diff(offsets)
    assert offsets[-1] - offsets[49] >= 2.0 and offsets.size - 50 >= 100
    assert gaps.mean() == pytest.approx(1 / 500, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.15)  # exponential: cv = 1
    np.testing.assert_array_equal(offsets, _schedule(Server(target_qps=500.0), config))  # seeded


def test_server_measures_from_scheduled_arrival_and_judges_the_target():
    engine = Sleeper(delay_s=0.002)
    result = run(engine, Server(target_qps=200, latency_target_ms=500, workers=8), config=QUICK)
    summary = result.summary()
    assert summary["queries"] >= 30 and result.met and summary["met"]
    assert (result.latencies_s >= result.service_s - 1e-12).all()  # latency includes any send lag
    assert (result.service_s >= 0.002).all()
    assert {"send_lag_p50_ms", "send_lag_p99_ms", "send_lag_max_ms"} <= set(summary)
    strict = run(engine, Server(target_qps=200, latency_target_ms=0.5, workers=8), config=QUICK)
    assert strict.met is False  # a 2 ms engine cannot meet a 0.5 ms p99


def test_overloaded_server_shows_lag_and_drops_what_it_cannot_send():
    engine = Sleeper(delay_s=0.01)  # one sender: at most ~100 q/s
    config = LoadConfig(warmup_queries=0, min_duration_s=0.2, min_queries=10, drain_timeout_s=0.2)
    result = run(engine, Server(target_qps=1000, latency_target_ms=1000, workers=1), config=config)
    assert result.dropped > 0 and not result.valid and result.met is False
    assert result.summary()["send_lag_max_ms"] > 50


def test_failed_queries_are_counted_not_raised():
    engine = Sleeper(delay_s=0.0, fail_every=4)
    result = run(engine, SingleStream(), config=LoadConfig(warmup_queries=0, min_duration_s=0, min_queries=20,
                                                            max_queries=20))
    assert result.errors == 5 and not result.valid
    assert result.summary()["queries"] == 15 and "engine hiccup" in result.error_messages[0]


def test_frames_have_one_row_per_query_and_per_run():
    engine = Sleeper(delay_s=0.0)
    results = [run(engine, SingleStream(), config=QUICK, label="a"), run(engine, Concurrency(2), config=QUICK)]
    frame = results[0].to_frame()
    assert len(frame) == results[0].ok.size
    assert {"scheduled_ms", "sent_ms", "done_ms", "latency_ms", "send_lag_ms"} <= set(frame.columns)
    table = summary_frame(results)
    assert list(table["label"]) == ["a", "sleeper"] and "p99_ms" in table and "qps" in table
    assert "SingleStream" not in repr(results[0]) and "single_stream" in repr(results[0])


def test_rate_search_brackets_the_capacity_of_a_single_sender():
    engine = Sleeper(delay_s=0.004)  # one sender serves at most ~250 q/s; a short run hides a mild overload
    search = find_max_rate(engine, latency_target_ms=100, config=LoadConfig(warmup_queries=3, min_duration_s=0.3,
                                                                             min_queries=20, drain_timeout_s=1),
                           start_qps=20, workers=1, max_runs=7, tolerance=0.2)
    rates = [r.params["target_qps"] for r in search.runs]
    assert 0 < search.best_qps < 500 and len(rates) <= 7
    assert any(not r.met and r.params["target_qps"] > search.best_qps for r in search.runs)
    assert all(r.summary()["p99_ms"] <= 100 for r in search.runs if r.met)
    assert search.summary()["best_qps"] == search.best_qps and len(search.to_frame()) == len(rates)


@pytest.mark.parametrize("make", [
    lambda: LoadConfig(min_queries=0), lambda: LoadConfig(warmup_queries=-1), lambda: LoadConfig(min_duration_s=-1),
    lambda: LoadConfig(min_queries=10, max_queries=5), lambda: LoadConfig(switch_interval_s=0),
    lambda: Server(target_qps=0), lambda: Server(target_qps=10, latency_target_ms=-1), lambda: Concurrency(0),
    lambda: Offline(batch_size=0), lambda: SingleStream(batch_size=0), lambda: Server(target_qps=10, workers=0),
    lambda: Offline(workers=0), lambda: Concurrency(2, batch_size=0),
])
def test_invalid_settings_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_rate_search_validates_its_settings():
    with pytest.raises(ConfigError, match="tolerance"):
        find_max_rate(Sleeper(), 10, tolerance=0)


def test_concurrency_sweep_interleaves_predictors_level_by_level_and_finds_the_knee():
    fast, slow = Sleeper(delay_s=0.001), Sleeper(delay_s=0.003)
    results = concurrency_sweep({"fast": fast, "slow": slow}, [1, 4], config=QUICK)
    assert [(r.label, r.params["concurrency"]) for r in results] == [("fast", 1), ("slow", 1), ("fast", 4),
                                                                      ("slow", 4)]
    assert fast.peak == 4 and slow.peak == 4
    curve = [r for r in results if r.label == "slow"]
    point = knee(curve, fraction=0.9)
    best = max(r.summary()["samples_per_s"] for r in curve)
    assert point.summary()["samples_per_s"] >= 0.9 * best
    with pytest.raises(ConfigError):
        concurrency_sweep({"fast": fast}, [0])
    with pytest.raises(ConfigError):
        knee([])


@pytest.mark.parametrize("scenario", [SingleStream(), Concurrency(3), Server(target_qps=500, workers=3)])
def test_programming_errors_in_the_predictor_propagate(scenario):
    class Buggy(Sleeper):
        def predict(self, feeds):
            raise TypeError("bug in user code")

    with pytest.raises(TypeError, match="bug in user code"):
        run(Buggy(), scenario, config=QUICK)


def test_steps_sends_each_phase_at_its_own_rate_with_blocking_senders():
    engine = Sleeper(delay_s=0.0005)
    result = run(engine, Steps(phases=[(40, 0.25), (160, 0.25)]), config=LoadConfig(seed=2))
    assert result.scenario == "steps" and result.valid and result.params["phases"] == ((40.0, 0.25), (160.0, 0.25))
    assert engine.calls == result.summary()["queries"]  # no warm-up: every arrival is measured
    quiet, busy = ((result.scheduled_s >= lo) & (result.scheduled_s < lo + 0.25) for lo in (0.0, 0.25))
    assert busy.sum() > quiet.sum() > 0
    assert len(result.timeline(0.25)) == 2


def test_steps_validates_phases_and_submit_needs_a_submit_method():
    for phases in ([], [(0, 1.0)], [(10, -1)]):
        with pytest.raises(ConfigError):
            Steps(phases=phases)
    with pytest.raises(ConfigError, match="submit"):
        run(Sleeper(), Steps(phases=[(50, 0.05)], submit=True))


def test_measure_a_stateful_model_counts_samples_along_the_batch_axes(tmp_path):
    """State [2, batch, 128] and a scalar sample rate: no "inputs disagree on the batch dimension" (issue 13 #6)."""
    from onnx_models import make_state_model

    import kit
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    feeds = {"input": np.zeros((3, 64), np.float32), "state": np.zeros((2, 3, 128), np.float32),
             "sr": np.array(16000, np.int64)}
    with OnnxRuntimeEngine(make_state_model(tmp_path / "vad.onnx")) as engine:
        result = kit.measure(engine, feeds, LoadConfig(min_duration_s=0.05, min_queries=5, warmup_queries=1))
    assert result.samples_per_query == 3 and result.summary()["queries"] >= 5


@pytest.mark.slow
def test_measure_silero_vad(tmp_path):
    pretrained = pytest.importorskip("pretrained")
    import kit
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.models import resolve_model

    with OnnxRuntimeEngine(resolve_model(pretrained.pretrained_path("silero-vad"))) as engine:
        feeds = {"input": np.zeros((2, 512), np.float32), "state": np.zeros((2, 2, 128), np.float32),
                 "sr": np.array(16000, np.int64)}
        result = kit.measure(engine, feeds, LoadConfig(min_duration_s=0.05, min_queries=5, warmup_queries=1))
    assert result.samples_per_query == 2 and result.summary()["queries"] >= 5

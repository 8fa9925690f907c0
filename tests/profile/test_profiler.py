import numpy as np
import pytest

from kit import create_engine
from kit.engines.base import PredictorBase
from kit.errors import ConfigError, InferenceError
from kit.profile import LoadConfig, LoadResult, compare, latency_summary, loadgen, median_spread, profile, summary_frame


class Flaky(PredictorBase):
    """Fails every other call with a kit error; profiles must count, not crash."""

    def __init__(self):
        self.calls = 0

    def predict(self, feeds):
        self.calls += 1
        if self.calls % 2:
            raise InferenceError("boom")
        return {"y": np.zeros(1)}


def test_profile_reaches_both_minimums(add_onnx):
    with create_engine(add_onnx) as engine:
        result = profile(engine, {"x": np.zeros((4, 64), np.float32)},
                         LoadConfig(warmup_queries=2, min_duration_s=0.05, min_queries=50), model="add")
    summary = result.summary()
    assert summary["queries"] >= 50 and summary["batch_size"] == 4 and summary["model"] == "add"
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["samples_per_s"] == pytest.approx(summary["qps"] * 4)
    assert len(result.to_frame()) == summary["queries"]


def test_profile_counts_errors_and_goes_on():
    result = profile(Flaky(), {"x": np.zeros((1, 1))}, LoadConfig(warmup_queries=0, min_duration_s=0, min_queries=10))
    assert result.errors >= 5 and result.error_messages[0] == "InferenceError: boom"


def test_a_predictor_that_always_fails_stops_after_three_queries():
    class Down(PredictorBase):
        def predict(self, feeds):
            raise InferenceError("down")

    result = profile(Down(), {"x": np.zeros((1, 1))}, LoadConfig(warmup_queries=0, min_duration_s=60, min_queries=50))
    assert result.errors == 3 and result.latencies_s.size == 0 and not result.valid


def test_profile_does_not_swallow_programming_errors():
    class Broken(PredictorBase):
        def predict(self, feeds):
            raise TypeError("bug")

    with pytest.raises(TypeError):
        profile(Broken(), {"x": np.zeros((1, 1))}, LoadConfig(warmup_queries=0, min_queries=1, min_duration_s=0))


def test_compare_interleaves_and_pools(add_onnx, mlp_onnx):
    engines = {"add": create_engine(add_onnx), "mlp": create_engine(mlp_onnx)}
    feeds = {"add": {"x": np.zeros((1, 64), np.float32)}, "mlp": {"features": np.zeros((1, 16), np.float32)}}
    results = compare(engines, feeds, rounds=3, config=LoadConfig(warmup_queries=1, min_duration_s=0.03, min_queries=9))
    frame = summary_frame(results)
    assert list(frame["label"]) == ["add", "mlp"] and (frame["queries"] >= 9).all()


@pytest.mark.parametrize("kwargs", [{"warmup_queries": -1}, {"min_queries": 0}, {"min_duration_s": -1},
                                    {"min_queries": 10, "max_queries": 5}])
def test_profile_config_validation(kwargs):
    with pytest.raises(ConfigError):
        LoadConfig(**kwargs)


def test_latency_summary_figures():
    s = latency_summary([0.001] * 99 + [0.1], duration_s=1.0)
    assert s["p50_ms"] == pytest.approx(1.0) and s["max_ms"] == pytest.approx(100.0) and s["qps"] == 100
    empty = latency_summary([])
    assert empty["queries"] == 0 and np.isnan(empty["p50_ms"])
    assert median_spread([1, 2, 3, 4, 5]) == (3.0, 1.0)


class FakeClock:
    """``time.perf_counter`` that moves only when the fake predictor says it took time."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_compare_keeps_each_query_s_round_and_reports_the_spread_of_the_rounds_medians(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(loadgen.time, "perf_counter", clock)

    class Drifting(PredictorBase):
        """Takes 1 ms per query in round 0, 3 ms in round 1, 2 ms in round 2 (4 queries a round)."""

        def __init__(self):
            self.calls = 0

        def predict(self, feeds):
            clock.now += (1e-3, 3e-3, 2e-3)[self.calls // 4]
            self.calls += 1
            return {"y": np.zeros(1)}

    config = LoadConfig(warmup_queries=0, min_duration_s=0, min_queries=12, max_queries=12)
    (result,) = compare({"drift": Drifting()}, {"x": np.zeros((1, 1))}, rounds=3, config=config)
    assert list(result.rounds) == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_allclose(result.round_p50s_ms(), [1.0, 3.0, 2.0])
    summary = result.summary()
    assert summary["rounds"] == 3 and summary["p50_spread_ms"] == pytest.approx(2.0)  # max - min of the medians
    assert summary["p50_ms"] == pytest.approx(2.0) and summary["duration_s"] == pytest.approx(0.024)
    assert (summary["p50_low_ms"], summary["p50_high_ms"]) == pytest.approx((1.0, 3.0))
    figure = result.p50_figure()  # publishable: median of the rounds' medians, their range and n
    assert (figure.value, figure.low, figure.high) == pytest.approx((2.0, 1.0, 3.0))
    assert (figure.n, figure.unit, figure.better) == (3, "ms", "lower")
    assert list(result.to_frame()["round"]) == list(result.rounds)
    single = profile(Drifting(), {"x": np.zeros((1, 1))}, LoadConfig(warmup_queries=0, min_duration_s=0,
                                                                     min_queries=4, max_queries=4))
    assert single.summary()["rounds"] == 1 and "p50_spread_ms" not in single.summary()
    assert single.p50_figure().n == 0 and not single.p50_figure().has_spread


def test_one_result_type_carries_labels_and_the_step_load_s_timeline():
    scheduled = np.array([0.1, 0.2, 0.6, 0.7, 0.8])
    ok = np.array([True, True, True, False, True])
    result = LoadResult("steps", {"phases": ((2.0, 0.5), (6.0, 0.5))}, scheduled, scheduled, scheduled + 0.01, ok,
                        1, 0.81, label="pool", labels={"model": "m"})
    summary = result.summary()
    assert summary["model"] == "m" and summary["queries"] == 4 and summary["errors"] == 1
    line = result.timeline(0.5)
    assert list(line.offered_qps) == [4.0, 6.0] and list(line.time_s) == [0.5, 1.0]


def test_p99_figure_spans_the_p99s_of_the_runs_slices():
    scheduled = np.arange(400) / 100.0  # 4 s of arrivals
    latency = np.full(400, 0.001)
    latency[[150, 151]] = 0.010  # two slow requests in the second quarter: its p99 is theirs
    ok = np.ones(400, bool)
    result = LoadResult("server", {}, scheduled, scheduled, scheduled + latency, ok, 1, 4.0)
    fig = result.p99_figure(windows=4)
    assert fig.n == 4 and fig.unit == "ms" and fig.better == "lower"
    assert fig.value == pytest.approx(np.percentile(latency, 99) * 1e3)
    assert fig.low == pytest.approx(1.0) and fig.high == pytest.approx(10.0)  # a quiet quarter, the slow one
    assert result.p99_figure(windows=1).n == 0
    assert list(result.window_percentiles_ms(50, 4)) == pytest.approx([1.0] * 4)  # medians never see them
    with pytest.raises(ConfigError, match="windows"):
        result.p99_figure(windows=0)


def test_fresh_runs_each_round_after_the_first_on_a_new_predictor_and_closes_it(monkeypatch):
    """Sessions differ (MiniLM: 20 or 30 ms by session): with ``fresh``, the rounds' spread sees it."""
    clock = FakeClock()
    monkeypatch.setattr(loadgen.time, "perf_counter", clock)
    made: list = []

    class Session(PredictorBase):
        """Each new session has its own steady speed: 1 ms, then 3 ms, then 2 ms per query."""

        def __init__(self, ms: float):
            self.ms, self.calls = ms, 0

        def predict(self, feeds):
            assert not self.closed
            clock.now += self.ms * 1e-3
            self.calls += 1
            return {"y": np.zeros(1)}

    def factory():
        made.append(Session((3.0, 2.0)[len(made)]))
        return made[-1]

    first = Session(1.0)
    config = LoadConfig(warmup_queries=1, min_duration_s=0, min_queries=12, max_queries=12)
    (result,) = compare({"s": first}, {"x": np.zeros((1, 1))}, rounds=3, config=config, fresh={"s": factory})
    np.testing.assert_allclose(result.round_p50s_ms(), [1.0, 3.0, 2.0])  # one session per round
    assert len(made) == 2 and all(s.closed and s.calls == 5 for s in made)  # warmed up, measured, closed
    assert not first.closed and first.calls == 5  # the caller's predictor stays open
    with pytest.raises(ConfigError, match="fresh names"):
        compare({"s": first}, {"x": np.zeros((1, 1))}, rounds=2, config=config, fresh={"other": factory})

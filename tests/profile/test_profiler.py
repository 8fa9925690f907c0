import numpy as np
import pytest

from kit import create_engine
from kit.engines.base import PredictorBase
from kit.errors import ConfigError, InferenceError
from kit.profile import ProfileConfig, compare, latency_summary, median_spread, profile, summary_frame


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
                         ProfileConfig(warmup=2, min_duration_s=0.05, min_queries=50), model="add")
    summary = result.summary()
    assert summary["queries"] >= 50 and summary["batch_size"] == 4 and summary["model"] == "add"
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert summary["samples_per_s"] == pytest.approx(summary["qps"] * 4)
    assert len(result.to_frame()) == summary["queries"]


def test_profile_counts_errors_and_goes_on():
    result = profile(Flaky(), {"x": np.zeros((1, 1))}, ProfileConfig(warmup=0, min_duration_s=0, min_queries=10))
    assert result.errors >= 5 and result.error_messages[0] == "boom"


def test_profile_does_not_swallow_programming_errors():
    class Broken(PredictorBase):
        def predict(self, feeds):
            raise TypeError("bug")

    with pytest.raises(TypeError):
        profile(Broken(), {"x": np.zeros((1, 1))}, ProfileConfig(warmup=0, min_queries=1, min_duration_s=0))


def test_compare_interleaves_and_pools(add_onnx, mlp_onnx):
    engines = {"add": create_engine(add_onnx), "mlp": create_engine(mlp_onnx)}
    feeds = {"add": {"x": np.zeros((1, 64), np.float32)}, "mlp": {"features": np.zeros((1, 16), np.float32)}}
    results = compare(engines, feeds, rounds=3, config=ProfileConfig(warmup=1, min_duration_s=0.03, min_queries=9))
    frame = summary_frame(results)
    assert list(frame["label"]) == ["add", "mlp"] and (frame["queries"] >= 9).all()


@pytest.mark.parametrize("kwargs", [{"warmup": -1}, {"min_queries": 0}, {"min_duration_s": -1},
                                    {"min_queries": 10, "max_queries": 5}])
def test_profile_config_validation(kwargs):
    with pytest.raises(ConfigError):
        ProfileConfig(**kwargs)


def test_latency_summary_figures():
    s = latency_summary([0.001] * 99 + [0.1], duration_s=1.0)
    assert s["p50_ms"] == pytest.approx(1.0) and s["max_ms"] == pytest.approx(100.0) and s["qps"] == 100
    empty = latency_summary([])
    assert empty["queries"] == 0 and np.isnan(empty["p50_ms"])
    assert median_spread([1, 2, 3, 4, 5]) == (3.0, 1.0)

from __future__ import annotations

import numpy as np
import pytest

from kit.engines.base import PredictorBase
from kit.errors import ConfigError
from kit.profile.workloads import Workload, replay, requests, stream_stats, synthetic_pool
from kit.specs import TensorSpec

SPECS = (TensorSpec("x", np.float32, ("batch", 3)),)


@pytest.mark.parametrize("bad", [{"kind": "pareto"}, {"requests": 0}, {"pool_size": -1}, {"skew": -0.5},
                                 {"kind": "unique", "requests": 10, "pool_size": 5}, {"requests": 2.0}])
def test_bad_workloads_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Workload(**bad)


def test_streams_are_deterministic_and_in_range():
    w = Workload(requests=500, pool_size=50, skew=1.1, seed=3)
    a, b = w.indices(), w.indices()
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() < 50 and a.size == 500
    assert not np.array_equal(a, Workload(requests=500, pool_size=50, skew=1.1, seed=4).indices())


def test_higher_skew_repeats_more():
    rates = [stream_stats(Workload(requests=4000, pool_size=20000, skew=s).indices())["unbounded_hit_rate"]
             for s in (0.0, 0.8, 1.0, 1.2)]
    assert rates == sorted(rates) and rates[-1] > rates[0] + 0.2
    probs = Workload(pool_size=10, skew=1.0).probabilities()
    np.testing.assert_allclose(probs[0] / probs[1], 2.0)  # 1/k: item 1 twice as popular as item 2
    np.testing.assert_allclose(Workload(kind="uniform", pool_size=4).probabilities(), 0.25)
    np.testing.assert_allclose(Workload(pool_size=4, skew=0).probabilities(), 0.25)


def test_unique_never_repeats_and_uniform_covers_the_pool():
    unique = Workload(kind="unique", requests=100, pool_size=120).indices()
    assert np.unique(unique).size == 100
    assert stream_stats(unique)["unbounded_hit_rate"] == 0.0
    uniform = Workload(kind="uniform", requests=2000, pool_size=20).indices()
    counts = np.bincount(uniform, minlength=20)
    assert counts.min() > 50


def test_lru_simulation_matches_a_hand_count():
    stats = stream_stats([0, 1, 0, 2, 1, 0], cache_entries=2)
    # 0 m, 1 m, 0 h, 2 m (evicts 1), 1 m (evicts 0), 0 m
    assert stats["lru_hit_rate"] == pytest.approx(1 / 6)
    assert stats["unbounded_hit_rate"] == pytest.approx(3 / 6)


def test_requests_copy_pool_feeds_and_replay_records_latencies():
    pool = synthetic_pool(SPECS, size=10)
    assert len({p["x"].tobytes() for p in pool}) == 10
    w = Workload(requests=30, pool_size=10, skew=1.0)
    sent = list(requests(pool, w))
    for feeds, i in zip(sent, w.indices()):
        np.testing.assert_array_equal(feeds["x"], pool[i]["x"])
        assert feeds["x"] is not pool[i]["x"]

    class Echo(PredictorBase):
        _input_specs = SPECS

        def predict(self, feeds):
            return {"y": feeds["x"]}

    result = replay(Echo(), pool, w, label="echo", cache="none")
    assert result.latencies_s.size == 30 and result.errors == 0
    assert result.summary()["cache"] == "none" and result.summary()["skew"] == 1.0
    with pytest.raises(ConfigError):
        list(requests(pool[:5], w))


def test_replay_interleaved_sends_every_request_to_every_predictor():
    from kit.profile.workloads import replay_interleaved

    pool = synthetic_pool(SPECS, size=8)
    seen: dict[str, list[bytes]] = {"a": [], "b": []}

    class Recorder(PredictorBase):
        _input_specs = SPECS

        def __init__(self, label):
            self.label = label

        def predict(self, feeds):
            seen[self.label].append(feeds["x"].tobytes())
            return {"y": feeds["x"]}

    w = Workload(kind="uniform", requests=20, pool_size=8)
    results = replay_interleaved({"a": Recorder("a"), "b": Recorder("b")}, pool, w, model="echo")
    assert [r.label for r in results] == ["a", "b"] and all(r.latencies_s.size == 20 for r in results)
    assert seen["a"] == seen["b"] == [pool[i]["x"].tobytes() for i in w.indices()]
    assert results[0].summary()["model"] == "echo" and results[0].summary()["workload"] == "uniform"
    with pytest.raises(ConfigError):
        replay_interleaved({}, pool, w)


def test_feed_pool_skips_repeated_inputs():
    from kit.profile.workloads import feed_pool

    pool = feed_pool(lambda s: {"x": np.full((1, 3), s % 4, np.float32)}, size=4)
    assert sorted(float(p["x"][0, 0]) for p in pool) == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="distinct"):
        feed_pool(lambda s: {"x": np.full((1, 3), s % 4, np.float32)}, size=5)
    # text inputs: equal strings are one input however many objects hold them (as the cache keys them)
    with pytest.raises(ConfigError, match="distinct"):
        feed_pool(lambda s: {"x": np.array([f"item-{s % 2}"], dtype=object)}, size=3)

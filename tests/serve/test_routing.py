"""The hybrid router: each policy, fallback chain, shadow traffic and per-route metrics."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest
from serve_fakes import SPEC_IN, Scripted, feeds

from kit.engines.base import Predictor
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import ConfigError, InferenceError, InputError
from kit.serve.faults import FaultInjector
from kit.serve.resilience import BreakerConfig, CircuitBreaker
from kit.serve.routing import (
    Fixed,
    LatencyAware,
    Router,
    Rule,
    Rules,
    Shadow,
    WeightedSplit,
    batch_size_at_least,
    dim_at_least,
    fits_specs,
)


def _routes(**offsets: float) -> dict[str, Scripted]:
    return {name: Scripted(offset=off, name=name) for name, off in offsets.items()}


def _answered_by(out, offsets):
    value = float(out["y"].ravel()[0]) - 1.0
    return next(n for n, off in offsets.items() if off == value)


def test_router_is_a_predictor_and_fixed_policy():
    router = Router(_routes(a=0, b=10), Fixed("b"))
    assert isinstance(router, Predictor)
    assert router.input_specs == SPEC_IN
    assert float(router.predict(feeds())["y"][0, 0]) == 11.0
    assert router.stats()["routes"]["b"]["calls"] == 1 and router.stats()["routes"]["a"]["calls"] == 0


def test_unknown_route_names_fail_at_construction():
    with pytest.raises(ConfigError, match="unknown route"):
        Router(_routes(a=0), Fixed("zzz"))
    with pytest.raises(ConfigError, match="fallback"):
        Router(_routes(a=0), fallback=("a", "b"))
    with pytest.raises(ConfigError):
        Router({})


def test_rules_route_on_batch_size_and_shape():
    offsets = dict(small=0, big=10, wide=20)
    policy = Rules([Rule("big", batch_size_at_least(8), "batches of 8+"),
                    Rule("wide", dim_at_least("x", 1, 5))], default="small")
    router = Router(_routes(**offsets), policy)
    assert _answered_by(router.predict(feeds(1)), offsets) == "small"
    assert _answered_by(router.predict(feeds(8)), offsets) == "big"
    assert router.predict({"x": np.ones((2, 6), np.float32)})["y"][0, 0] == 21.0


def test_rules_on_the_model_pick_the_route_whose_specs_fit(add_onnx, mlp_onnx):
    add, mlp = OnnxRuntimeEngine(add_onnx), OnnxRuntimeEngine(mlp_onnx)
    router = Router({"add": add, "mlp": mlp}, Rules([Rule("mlp", fits_specs(mlp.input_specs))], default="add"))
    assert set(router.predict({"features": np.ones((2, 16), np.float32)})) == {"probabilities"}
    assert set(router.predict({"x": np.ones((2, 64), np.float32)})) == {"y"}
    router.close()
    assert add.closed and mlp.closed


def test_weighted_split_follows_the_canary_percentage_and_is_seeded():
    def run(seed):
        offsets = dict(stable=0, canary=10)
        router = Router(_routes(**offsets), WeightedSplit.canary("stable", "canary", 10, seed=seed))
        return [_answered_by(router.predict(feeds()), offsets) for _ in range(2000)], router

    picks, router = run(5)
    share = Counter(picks)["canary"] / len(picks)
    assert 0.08 < share < 0.12
    assert picks == run(5)[0]
    router.policy.set_weights({"stable": 0, "canary": 1})
    assert all(_answered_by(router.predict(feeds()), dict(stable=0, canary=10)) == "canary" for _ in range(20))
    with pytest.raises(ConfigError):
        router.policy.set_weights({"stable": 1, "nope": 1})
    with pytest.raises(ConfigError):
        WeightedSplit.canary("a", "b", 150)


def test_latency_aware_ewma_prefers_the_faster_route():
    routes = {"slow": FaultInjector(Scripted(offset=0), latency_s=0.004), "fast": Scripted(offset=10)}
    policy = LatencyAware(mode="ewma", explore=0.0)
    router = Router(routes, policy)
    picks = Counter(_answered_by(router.predict(feeds()), dict(slow=0, fast=10)) for _ in range(30))
    assert picks["slow"] == 1 and picks["fast"] == 29  # each measured once, then the faster wins
    assert policy.ewma_s["slow"] > policy.ewma_s["fast"]


def test_latency_aware_ewma_penalises_errors_and_explores():
    routes = {"broken": Scripted([InferenceError("x")] * 1000, offset=0), "ok": Scripted(offset=10)}
    policy = LatencyAware(mode="ewma", explore=0.2, error_penalty_s=1.0, seed=3)
    router = Router(routes, policy, fallback=("ok",))
    for _ in range(200):
        router.predict(feeds())
    stats = router.stats()["routes"]
    assert 5 < stats["broken"]["calls"] < 60  # only exploration reaches it after the first error
    assert policy.ewma_s["broken"] >= 0.1


def test_least_outstanding_avoids_the_busy_route():
    gate, started = threading.Event(), threading.Event()
    busy = Scripted(offset=0, on_call=lambda: (started.set(), gate.wait(5)))
    router = Router({"busy": busy, "idle": Scripted(offset=10)}, LatencyAware(mode="least_outstanding", explore=0))
    worker = threading.Thread(target=router.predict, args=(feeds(),))
    worker.start()  # ties break to the first route: "busy" takes this one and blocks
    assert started.wait(5)
    assert router.stats()["routes"]["busy"]["in_flight"] == 1
    busy.on_call = None
    assert all(router.predict(feeds())["y"][0, 0] == 11.0 for _ in range(5))
    gate.set()
    worker.join(5)
    assert router.stats()["routes"]["busy"]["in_flight"] == 0
    with pytest.raises(ConfigError):
        LatencyAware(mode="fastest")


def test_fallback_chain_answers_when_the_primary_fails():
    routes = {"a": Scripted([InferenceError("a down")] * 3, name="a"),
              "b": Scripted([InferenceError("b down")], offset=10, name="b"),
              "c": Scripted(offset=20, name="c")}
    router = Router(routes, Fixed("a"), fallback=("a", "b", "c"))
    assert router.predict(feeds())["y"][0, 0] == 21.0  # a and b failed, c answered
    assert router.predict(feeds())["y"][0, 0] == 11.0  # b recovered
    stats = router.stats()
    assert stats["fell_back"] == 2 and stats["failed"] == 0
    assert stats["routes"]["c"]["answered_as_fallback"] == 1 and stats["routes"]["a"]["errors"] == 2
    assert stats["routes"]["a"]["errors_by_type"] == {"InferenceError": 2}


def test_fallback_never_retries_bad_inputs_and_raises_the_last_error_when_all_fail():
    routes = {"a": Scripted([InputError("bad input")]), "b": Scripted(offset=10)}
    router = Router(routes, Fixed("a"), fallback=("b",))
    with pytest.raises(InputError):
        router.predict(feeds())
    assert routes["b"].calls == 0
    routes = {"a": Scripted([InferenceError("a")]), "b": Scripted([InferenceError("b last")])}
    router = Router(routes, Fixed("a"), fallback=("b",))
    with pytest.raises(InferenceError, match="b last"):
        router.predict(feeds())
    assert router.stats()["failed"] == 1


def test_fallback_goes_around_an_open_breaker():
    primary = CircuitBreaker(Scripted([InferenceError("x")] * 100), BreakerConfig(failure_threshold=2))
    router = Router({"primary": primary, "backup": Scripted(offset=10)}, Fixed("primary"), fallback=("backup",))
    for _ in range(10):
        assert router.predict(feeds())["y"][0, 0] == 11.0
    assert primary.state == "open"
    assert router.stats()["routes"]["primary"]["errors_by_type"]["CircuitOpen"] == 8
    assert primary.inner.calls == 2
    assert router.stats()["fell_back"] == 10 and router.stats()["failed"] == 0


def test_shadow_mirrors_compares_and_never_touches_the_response():
    routes = {"live": Scripted(offset=0), "same": Scripted(offset=0), "diff": Scripted(offset=0.5),
              "broken": Scripted([InferenceError("boom")] * 100)}
    for candidate, agreed, errors in (("same", 20, 0), ("diff", 0, 0), ("broken", 0, 20)):
        router = Router(dict(routes), Fixed("live"), shadow=Shadow(candidate))
        for _ in range(20):
            assert router.predict(feeds())["y"][0, 0] == 1.0  # always the live answer
        assert router.shadow.drain(5)
        s = router.stats()["shadow"]
        assert (s["mirrored"], s["agreed"], s["errors"]) == (20, agreed, errors)
        assert s["compared"] + s["errors"] == 20
        if candidate == "diff":
            assert s["disagreed"] == 20 and s["max_abs_diff"] == pytest.approx(0.5)
        router.shadow.close()


def test_shadow_fraction_argmax_and_backpressure():
    router = Router({"live": Scripted(), "cand": Scripted(offset=0.5)}, Fixed("live"),
                    shadow=Shadow("cand", fraction=0.5, compare="argmax", max_pending=1000, seed=2))
    for _ in range(200):
        router.predict({"x": np.arange(4, dtype=np.float32)[None]})
    router.shadow.drain(5)
    s = router.stats()["shadow"]
    assert 70 < s["mirrored"] < 130 and s["agreement"] == 1.0  # same argmax despite the offset
    gate = threading.Event()
    slow = Router({"live": Scripted(), "cand": Scripted(on_call=lambda: gate.wait(5))}, Fixed("live"),
                  shadow=Shadow("cand", max_pending=2))
    for _ in range(10):
        slow.predict(feeds())
    assert slow.stats()["shadow"]["dropped"] == 8
    gate.set()
    assert slow.shadow.drain(5)
    with pytest.raises(ConfigError):
        Shadow("cand", compare="cosine")


def test_stats_frame_has_one_row_per_route():
    router = Router(_routes(a=0, b=1), WeightedSplit({"a": 1, "b": 1}))
    for _ in range(50):
        router.predict(feeds())
    frame = router.to_frame()
    assert list(frame["route"]) == ["a", "b"] and frame["calls"].sum() == 50
    assert (frame["p99_ms"] >= frame["p50_ms"]).all()


def test_shadow_agreement_is_quality_compare_in_both_modes():
    answer = {"p": np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)}
    close, argmax = Shadow("cand"), Shadow("cand", compare="argmax")
    assert close._agree(answer, answer) == (True, 0.0)
    shifted = {"p": answer["p"] + 0.05}
    ok, diff = close._agree(answer, shifted)
    assert not ok and diff == pytest.approx(0.05, rel=1e-3)
    assert argmax._agree(answer, shifted)[0]  # same argmax despite the offset
    assert not argmax._agree(answer, {"p": answer["p"][:, ::-1].copy()})[0]
    assert close._agree(answer, {"q": answer["p"]}) == (False, float("inf"))
    assert close._agree(answer, {"p": answer["p"][:1]}) == (False, float("inf"))
    assert not close._agree(answer, {"p": np.full_like(answer["p"], np.nan)})[0]

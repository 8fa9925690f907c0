"""MetricsRecorder and Instrumented: exact counts under concurrent writers, Prometheus round-trip."""

from __future__ import annotations

import threading
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kit.engines.base import PredictorBase, Wrapper
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import ConfigError, InferenceError
from kit.profile.metrics import Instrumented, MetricsRecorder


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """Parsed exposition: (sample name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class _Counting(Wrapper):
    """A wrapper following the stats() convention, like the cache and batcher do."""

    def __init__(self, inner):
        super().__init__(inner)
        self.hits = 0
        self.lock = threading.Lock()

    def predict(self, feeds):
        with self.lock:
            self.hits += 1
        return self.inner.predict(feeds)

    def stats(self):
        return {"hits": self.hits, "misses": 0, "queue_depth": 3, "policy": "lru", "nested": {"size": 7}}


class _Flaky(PredictorBase):
    name = "flaky"

    def __init__(self):
        self.calls = 0

    def predict(self, feeds):
        self.calls += 1
        if self.calls % 3 == 0:
            raise InferenceError("every third call fails")
        return {"y": feeds["x"]}


def test_concurrent_writers_lose_no_counts():
    recorder = MetricsRecorder()
    threads, per_thread = 8, 2000
    keys = [recorder.labels("m", str(v), "onnxruntime", "a") for v in range(2)]

    def write(i: int) -> None:
        for j in range(per_thread):
            recorder.record(0.001 * (j % 5 + 1), batch_size=2, labels=keys[i % 2],
                            error=InferenceError("x") if j % 10 == 0 else None)
            recorder.record_cache(hit=j % 2 == 0, labels=keys[i % 2])

    workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    frame = recorder.to_frame().set_index("version")
    total = threads // 2 * per_thread
    for version in ("0", "1"):
        row = frame.loc[version]
        assert row["requests"] == total
        assert row["errors"] == total // 10
        assert row["cache_hits"] == row["cache_misses"] == total // 2
        assert row["mean_batch_size"] == 2
        assert row["error_types"] == {"InferenceError": total // 10}
    parsed = _samples(recorder.exposition())
    labels = (("engine", "onnxruntime"), ("model", "m"), ("route", "a"), ("version", "0"))
    assert parsed[("kit_requests_total", labels)] == total
    assert parsed[("kit_request_latency_seconds_count", labels)] == total - total // 10
    assert parsed[("kit_errors_total", tuple(sorted([*labels, ("error", "InferenceError")])))] == total // 10
    assert parsed[("kit_cache_lookups_total", tuple(sorted([*labels, ("result", "hit")])))] == total // 2


def test_instrumented_stack_records_calls_errors_and_polled_stats(add_onnx):
    recorder = MetricsRecorder()
    engine = OnnxRuntimeEngine(add_onnx)
    stack = Instrumented(_Counting(engine), recorder, model="add", version="7", route="blue")
    feeds = {"x": np.ones((4, 64), np.float32)}
    for _ in range(5):
        np.testing.assert_allclose(stack.predict(feeds)["y"], 2.0)
    flaky = Instrumented(_Flaky(), recorder, model="flaky", engine="fake")
    for _ in range(6):
        try:
            flaky.predict({"x": np.zeros((1, 2))})
        except InferenceError:
            pass
    frame = recorder.to_frame().set_index("model")
    assert frame.loc["add", "requests"] == 5 and frame.loc["add", "engine"] == "onnxruntime"
    assert frame.loc["add", "mean_batch_size"] == 4 and frame.loc["add", "p95_ms"] > 0
    assert frame.loc["add", "cache_hits"] == 5  # folded in from the wrapper's stats()
    assert frame.loc["add", "queue_depth"] == 3
    assert frame.loc["flaky", "requests"] == 6 and frame.loc["flaky", "errors"] == 2
    stats = recorder.stats_frame()
    assert set(stats["stat"]) == {"hits", "misses", "queue_depth", "nested.size"}
    parsed = _samples(recorder.exposition())
    stat_key = ("kit_component_stat", tuple(sorted({"model": "add", "version": "7", "engine": "onnxruntime",
                                                    "route": "blue", "stat": "hits",
                                                    "component": stats["component"][0]}.items())))
    assert parsed[stat_key] == 5
    stack.close()
    assert engine.closed


def test_polls_the_kit_serving_stack(add_onnx):
    from kit.serve.batching import DynamicBatcher
    from kit.serve.cache import ResultCache
    from kit.serve.routing import Router

    recorder = MetricsRecorder()
    engine = OnnxRuntimeEngine(add_onnx)
    router = Router({"cached": ResultCache(engine, max_entries=8),
                     "batched": DynamicBatcher(OnnxRuntimeEngine(add_onnx), max_batch_size=4)})
    stack = Instrumented(router, recorder, model="add")
    feeds = {"x": np.ones((1, 64), np.float32)}
    for _ in range(4):
        stack.predict(feeds)
    components = {name.split(":")[0] for name in recorder.stats_frame()["component"]}
    assert {"Router", "ResultCache", "DynamicBatcher"} <= components
    frame = recorder.to_frame().iloc[0]
    assert frame["requests"] == 4 and frame["cache_hits"] == 3 and frame["cache_misses"] == 1
    assert frame["queue_depth"] == 0  # the batcher's queue_requests, polled
    stack.close()


def test_metrics_endpoint_serves_its_own_registry():
    first, second = MetricsRecorder(), MetricsRecorder()
    first.record(0.002, labels=first.labels("served"))
    second.record(0.002, labels=second.labels("other"))
    with first:
        url = first.serve(port=0)
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(ConfigError):
            first.serve(port=0)
        body = urllib.request.urlopen(url, timeout=5).read().decode()
    parsed = _samples(body)
    assert parsed[("kit_requests_total", (("engine", ""), ("model", "served"), ("route", ""),
                                          ("version", "")))] == 1
    assert "other" not in body  # each recorder has its own registry
    assert first.url is None
    first.stop()


def test_bad_configuration_is_a_config_error():
    with pytest.raises(ConfigError):
        MetricsRecorder(window=0)
    with pytest.raises(ConfigError):
        MetricsRecorder(namespace="not a name")

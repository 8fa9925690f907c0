from __future__ import annotations

import threading

import numpy as np
import pytest
from serve_fakes import FakeClock

from kit.engines.base import PredictorBase, Wrapper
from kit.errors import ConfigError, InferenceError
from kit.hashing import feeds_key
from kit.serve.cache import CacheConfig, LRUStore, ResultCache, freeze, model_identity
from kit.specs import TensorSpec
from kit.testing import run_threads


class Doubler(PredictorBase):
    """Counts calls and rows so tests can tell what reached the model."""

    def __init__(self, width: int = 4) -> None:
        self.name = "doubler"
        self._input_specs = (TensorSpec("x", np.float32, ("batch", width)),)
        self._output_specs = (TensorSpec("y", np.float32, ("batch", width)),)
        self.calls = 0
        self.rows = 0
        self._lock = threading.Lock()

    def predict(self, feeds):
        with self._lock:
            self.calls += 1
            self.rows += feeds["x"].shape[0]
        return {"y": feeds["x"] * 2}


def row(value: float, width: int = 4) -> dict[str, np.ndarray]:
    return {"x": np.full((1, width), value, np.float32)}


@pytest.mark.parametrize("bad", [{"max_entries": 0}, {"max_entries": -3}, {"max_bytes": 0},
                                 {"ttl_s": -1.0}, {"ttl_s": 0}, {"max_entries": 2.5}, {"per_sample": "yes"}])
def test_bad_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        CacheConfig(**bad)
    with pytest.raises(ConfigError):
        ResultCache(Doubler(), **bad)


def test_key_covers_name_dtype_shape_bytes_and_identity():
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    base = feeds_key({"x": x}, b"m")
    assert feeds_key({"x": x.copy()}, b"m") == base  # content, not object identity
    assert feeds_key({"x": np.asfortranarray(x)}, b"m") == base  # memory layout does not matter
    assert len(base) == 16
    variants = [feeds_key({"z": x}, b"m"), feeds_key({"x": x.view(np.int32)}, b"m"),
                feeds_key({"x": x.reshape(4, 2)}, b"m"), feeds_key({"x": x + 1}, b"m"),
                feeds_key({"x": x}, b"other model")]
    assert len(set(variants + [base])) == len(variants) + 1


def test_hits_skip_the_model_and_return_equal_answers():
    inner = Doubler()
    cache = ResultCache(inner, max_entries=8)
    first = cache.predict(row(1.0))
    again = cache.predict(row(1.0))
    np.testing.assert_array_equal(first["y"], again["y"])
    assert inner.calls == 1
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"], stats["inner_calls"]) == (1, 1, 1, 1)
    assert stats["hit_rate"] == 0.5
    assert isinstance(cache, Wrapper) and cache.input_specs == inner.input_specs


def test_callers_cannot_corrupt_the_cache():
    cache = ResultCache(Doubler())
    feeds = row(3.0)
    out = cache.predict(feeds)
    with pytest.raises(ValueError):
        out["y"][0, 0] = 99.0
    with pytest.raises(ValueError):
        out["y"].flags.writeable = True
    base = out["y"]
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base, bytes)  # the root buffer is immutable
    feeds["x"][:] = -1.0  # mutating the request afterwards changes nothing stored
    np.testing.assert_array_equal(cache.predict(row(3.0))["y"], np.full((1, 4), 6.0, np.float32))


def test_eviction_is_least_recently_used_first():
    inner = Doubler()
    cache = ResultCache(inner, max_entries=2)
    cache.predict(row(1))
    cache.predict(row(2))
    cache.predict(row(1))  # 1 is now the most recent
    cache.predict(row(3))  # evicts 2
    assert cache.stats()["evictions"] == 1
    calls = inner.calls
    cache.predict(row(1))
    assert inner.calls == calls  # still cached
    cache.predict(row(2))
    assert inner.calls == calls + 1  # was evicted


def test_byte_bound_holds_and_oversized_entries_are_not_stored():
    inner = Doubler(width=256)  # 1 KiB per output row
    entry = 16 + 256 * 4
    cache = ResultCache(inner, max_entries=100, max_bytes=3 * entry)
    for v in range(10):
        cache.predict(row(v, 256))
        assert cache.stats()["bytes"] <= 3 * entry
    stats = cache.stats()
    assert stats["entries"] == 3 and stats["evictions"] == 7 and stats["bytes"] == 3 * entry
    small = ResultCache(Doubler(width=256), max_bytes=entry - 1)
    small.predict(row(1, 256))
    small.predict(row(1, 256))
    assert small.stats()["too_large"] == 2 and small.stats()["entries"] == 0


def test_ttl_expiry_with_an_injected_clock():
    clock = FakeClock(start=0.0)
    inner = Doubler()
    cache = ResultCache(inner, ttl_s=10.0, clock=clock)
    cache.predict(row(1))
    clock.now = 9.9
    cache.predict(row(1))
    assert inner.calls == 1
    clock.now = 10.0
    cache.predict(row(1))
    assert inner.calls == 2
    stats = cache.stats()
    assert stats["expirations"] == 1 and stats["hits"] == 1 and stats["misses"] == 2


def test_shared_store_keeps_models_apart(add_onnx, mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    store = LRUStore(CacheConfig(max_entries=16))
    a = ResultCache(Doubler(), store=store, identity="model-a")
    b = ResultCache(Doubler(), store=store, identity="model-b")
    a.predict(row(1))
    b.predict(row(1))
    assert store.stats()["entries"] == 2 and store.stats()["hits"] == 0
    with OnnxRuntimeEngine(add_onnx) as e1, OnnxRuntimeEngine(add_onnx) as e2, OnnxRuntimeEngine(mlp_onnx) as e3:
        assert model_identity(e1) == model_identity(e2)  # same file, same options
        assert model_identity(e1) != model_identity(e3)
        assert model_identity(e1) != model_identity(OnnxRuntimeEngine(add_onnx, graph_optimization_level="basic"))


def test_wraps_a_real_engine(add_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    with ResultCache(OnnxRuntimeEngine(add_onnx), max_entries=4) as cache:
        x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
        np.testing.assert_allclose(cache.predict({"x": x})["y"], x + 1)
        np.testing.assert_allclose(cache.predict({"x": x.copy()})["y"], x + 1)
        assert cache.stats()["hits"] == 1
    assert cache.closed and cache.inner.closed


def test_per_sample_serves_hits_and_sends_misses_as_a_smaller_batch():
    inner = Doubler()
    cache = ResultCache(inner, per_sample=True)
    cache.predict({"x": np.stack([np.full(4, v, np.float32) for v in (1, 2)])})
    assert (inner.calls, inner.rows) == (1, 2)
    batch = np.stack([np.full(4, v, np.float32) for v in (5, 1, 5, 3, 2)])
    out = cache.predict({"x": batch})
    assert (inner.calls, inner.rows) == (2, 4)  # only 5 and 3 reached the model, 5 once
    np.testing.assert_array_equal(out["y"], batch * 2)  # reassembled in request order
    assert cache.predict(row(3))["y"][0, 0] == 6 and inner.calls == 2  # a single row hits a batch's entry
    with pytest.raises(ValueError):
        out["y"][0, 0] = 0


def test_per_sample_rejects_outputs_without_a_batch_axis():
    class Summer(Doubler):
        def predict(self, feeds):
            return {"y": feeds["x"].sum(keepdims=True)[0]}

    cache = ResultCache(Summer(), per_sample=True)
    with pytest.raises(InferenceError, match="leading axis"):
        cache.predict({"x": np.arange(12, dtype=np.float32).reshape(3, 4)})


def test_thread_safety_under_concurrent_use():
    inner = Doubler()
    cache = ResultCache(inner, max_entries=16)

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(400):
            v = float(rng.integers(0, 40))
            out = cache.predict(row(v))
            assert out["y"][0, 0] == 2 * v

    run_threads(worker, 8)
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == 8 * 400
    assert stats["entries"] <= 16 and stats["inserts"] - stats["evictions"] == stats["entries"]
    assert stats["inserts"] + stats["replacements"] == stats["misses"]
    assert stats["inner_calls"] == inner.calls == stats["misses"]


def test_storing_a_key_twice_is_a_replacement_and_clear_is_counted():
    store = LRUStore(CacheConfig(max_entries=4))
    value = freeze({"y": np.zeros((1, 2), np.float32)})
    store.put(b"k" * 16, value)
    store.put(b"k" * 16, value)
    store.put(b"j" * 16, value)
    stats = store.stats()
    assert (stats["inserts"], stats["replacements"], stats["entries"]) == (2, 1, 2)
    store.clear()
    stats = store.stats()
    assert (stats["cleared"], stats["entries"], stats["bytes"]) == (2, 0, 0)


def test_freeze_copies_object_arrays_read_only():
    out = freeze({"s": np.array(["a", "b"], dtype=object), "f": [1.0, 2.0]})
    assert not out["s"].flags.writeable and not out["f"].flags.writeable
    assert feeds_key({"s": np.array(["a", "b"], dtype=object)}) != feeds_key({"s": np.array(["ab", ""], dtype=object)})


def test_store_matches_a_reference_lru_on_random_operations():
    from collections import OrderedDict

    from hypothesis import given, settings
    from hypothesis import strategies as st

    ops = st.lists(st.tuples(st.sampled_from(["get", "put"]), st.integers(0, 9), st.integers(1, 4)), max_size=60)

    @settings(max_examples=150, deadline=None)
    @given(ops=ops, max_entries=st.integers(1, 5), max_rows=st.integers(4, 12))
    def check(ops, max_entries, max_rows):
        row_bytes = 8
        store = LRUStore(CacheConfig(max_entries=max_entries, max_bytes=max_rows * row_bytes + 16 * max_entries))
        model: OrderedDict[bytes, int] = OrderedDict()
        for op, k, rows in ops:
            key = bytes([k]) * 16
            if op == "get":
                got = store.get(key)
                assert (got is None) == (key not in model)
                if key in model:
                    model.move_to_end(key)
            else:
                value = freeze({"y": np.zeros((rows, 2), np.float32)})
                size = 16 + rows * row_bytes
                if size > store.config.max_bytes:
                    assert not store.put(key, value)
                    continue
                store.put(key, value)
                model.pop(key, None)
                model[key] = size
                while len(model) > max_entries or sum(model.values()) > store.config.max_bytes:
                    model.popitem(last=False)
            assert store.keys() == list(model)
            stats = store.stats()
            assert stats["bytes"] == sum(model.values())
            assert stats["inserts"] - stats["evictions"] == stats["entries"]

    check()


@pytest.mark.parametrize("first, second", [(b"a", "b'a'"), (1, "1"), ("x", b"x"), (1, 1.0), (None, "None")])
def test_string_tensor_items_of_different_types_never_share_a_key(first, second):
    """Issue 16 #12: keys used str(item), so the second caller got the first caller's answer."""
    def obj(item):
        array = np.empty((1,), dtype=object)
        array[0] = item
        return {"text": array}

    assert feeds_key(obj(first)) != feeds_key(obj(second))
    assert feeds_key(obj(first)) == feeds_key(obj(first))

    class TypeName(PredictorBase):
        name = "typename"
        _input_specs = (TensorSpec("text", np.object_, (1,)),)
        _output_specs = (TensorSpec("kind", np.object_, (1,)),)

        def predict(self, feeds):
            return {"kind": np.asarray([type(feeds["text"][0]).__name__], dtype=object)}

    with ResultCache(TypeName(), identity=b"t") as cache:
        assert cache.predict(obj(first))["kind"][0] == type(first).__name__
        assert cache.predict(obj(second))["kind"][0] == type(second).__name__


def test_per_sample_cache_cuts_rows_along_each_inputs_batch_axis(tmp_path):
    """A state [2, batch, 128] is cut on axis 1, the scalar sample rate goes whole into every row's key."""
    from onnx_models import make_state_model

    from kit.engines.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(make_state_model(tmp_path / "vad.onnx"))
    rng = np.random.default_rng(0)
    feeds = {"input": rng.standard_normal((3, 32)).astype(np.float32),
             "state": rng.standard_normal((2, 3, 128)).astype(np.float32), "sr": np.array(16000, np.int64)}
    want = engine.predict(feeds)
    with ResultCache(engine, per_sample=True) as cache:
        for _ in range(2):  # a miss, then every row a hit
            got = cache.predict(feeds)
            np.testing.assert_allclose(got["out"], want["out"], rtol=1e-5)
            np.testing.assert_allclose(got["new_state"], want["new_state"], rtol=1e-6)
        assert cache.stats()["inner_calls"] == 1
        other_rate = cache.predict({**feeds, "sr": np.array(8000, np.int64)})
        assert cache.stats()["inner_calls"] == 2  # another sample rate is another key
        assert not np.allclose(other_rate["out"], want["out"])

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest

from kit.artifacts import file_digest
from kit.engines.base import PredictorBase
from kit.errors import ConfigError
from kit.loading.optimized_cache import OptimizedModelCache, load_breakdown, optimized_cache_key, read_blob, write_blob
from kit.loading.pool import EnginePool
from kit.specs import synthetic_feeds
from kit.testing import run_threads


def _outputs(engine):
    return engine.predict(synthetic_feeds(engine.input_specs, batch_size=3, seed=7))


@pytest.fixture
def reference(mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    with OnnxRuntimeEngine(mlp_onnx) as engine:
        return _outputs(engine)


def test_miss_then_hit_gives_the_original_answers(tmp_path, mlp_onnx, reference):
    cache = OptimizedModelCache(tmp_path)
    engine, report = cache.load(mlp_onnx)
    assert report.cache == "miss" and len(cache.entries()) == 1
    np.testing.assert_allclose(_outputs(engine)["probabilities"], reference["probabilities"], rtol=1e-5)
    engine, report = cache.load(mlp_onnx)
    assert report.cache == "hit" and "graph_optimization" not in report.stages
    assert set(report.stages) >= {"file_read", "cache_read", "session_creation", "first_inference"}
    assert engine.options.graph_optimization_level == "disable"  # optimization was skipped
    np.testing.assert_allclose(_outputs(engine)["probabilities"], reference["probabilities"], rtol=1e-5)
    assert report.total_s > 0 and list(report.to_frame().columns) == ["model", "cache", "stage", "seconds"]


def test_key_changes_with_model_options_version_and_cpu(mlp_onnx, add_onnx, monkeypatch):
    from kit.engines.onnxruntime import OrtOptions

    data = file_digest(mlp_onnx)
    base = optimized_cache_key(data, OrtOptions(), cpu="cpu-a")
    assert optimized_cache_key(data, OrtOptions(), cpu="cpu-a") == base
    others = [optimized_cache_key(file_digest(add_onnx), OrtOptions(), cpu="cpu-a"),
              optimized_cache_key(data, OrtOptions(graph_optimization_level="extended"), cpu="cpu-a"),
              optimized_cache_key(data, OrtOptions(intra_op_num_threads=1), cpu="cpu-a"),
              optimized_cache_key(data, OrtOptions(session_config={"session.x": "1"}), cpu="cpu-a"),
              optimized_cache_key(data, OrtOptions(), cpu="cpu-b")]
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "__version__", "0.0.0-other")
    others.append(optimized_cache_key(data, OrtOptions(), cpu="cpu-a"))
    assert len(set(others + [base])) == len(others) + 1


def test_changed_options_invalidate(tmp_path, mlp_onnx):
    cache = OptimizedModelCache(tmp_path)
    assert cache.load(mlp_onnx)[1].cache == "miss"
    assert cache.load(mlp_onnx, graph_optimization_level="basic")[1].cache == "miss"
    assert cache.load(mlp_onnx, graph_optimization_level="basic")[1].cache == "hit"
    assert len(cache.entries()) == 2
    cache.clear()
    assert cache.entries() == [] and cache.load(mlp_onnx)[1].cache == "miss"


@pytest.mark.parametrize("part", ["graph", "sidecar"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "delete"])
def test_corrupted_file_is_detected_warned_and_rebuilt(tmp_path, mlp_onnx, reference, damage, part):
    cache = OptimizedModelCache(tmp_path)
    key = cache.load(mlp_onnx)[1].key
    graph, sidecar = cache.paths_for(key)
    path = graph if part == "graph" else sidecar
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:])
    elif damage == "garbage":
        path.write_bytes(b"not a cache file at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        engine, report = cache.load(mlp_onnx)
    assert report.cache == "rebuilt"
    np.testing.assert_allclose(_outputs(engine)["probabilities"], reference["probabilities"], rtol=1e-5)
    read_blob(sidecar)  # the rebuilt entry is intact
    assert cache.load(mlp_onnx)[1].cache == "hit"


def test_intact_entry_that_does_not_reproduce_the_model_is_rejected(tmp_path, mlp_onnx, add_onnx, reference):
    import xxhash

    cache = OptimizedModelCache(tmp_path)
    key = cache.load(mlp_onnx)[1].key
    graph, sidecar = cache.paths_for(key)
    meta, parts = read_blob(sidecar)
    wrong = add_onnx.read_bytes()
    graph.write_bytes(wrong)  # a valid ONNX graph with matching digests, but the wrong model
    write_blob(sidecar, {**meta, "graph_xxh3": xxhash.xxh3_128_hexdigest(wrong), "graph_bytes": len(wrong)}, parts)
    with pytest.warns(RuntimeWarning, match="takes inputs"):
        engine, report = cache.load(mlp_onnx)
    assert report.cache == "rebuilt"
    np.testing.assert_allclose(_outputs(engine)["probabilities"], reference["probabilities"], rtol=1e-5)


def test_entry_whose_outputs_drift_is_rejected(tmp_path, mlp_onnx):
    cache = OptimizedModelCache(tmp_path)
    key = cache.load(mlp_onnx)[1].key
    _, sidecar = cache.paths_for(key)
    meta, parts = read_blob(sidecar)
    import io

    with np.load(io.BytesIO(parts["reference"])) as z:
        shifted = {k: z[k] + 0.5 for k in z.files}
    buf = io.BytesIO()
    np.savez(buf, **shifted)
    write_blob(sidecar, meta, {"reference": buf.getvalue()})
    with pytest.warns(RuntimeWarning, match="does not reproduce"):
        assert cache.load(mlp_onnx)[1].cache == "rebuilt"


def _fill(args):
    directory, model = args
    _, report = OptimizedModelCache(directory).load(model)
    return report.cache


def test_two_processes_filling_the_same_cache_do_not_corrupt_it(tmp_path, mlp_onnx):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.map(_fill, [(str(tmp_path), str(mlp_onnx))] * 6)
    assert set(results) <= {"miss", "hit"}
    cache = OptimizedModelCache(tmp_path)
    (path,) = cache.entries()
    read_blob(cache.paths_for(path.stem)[1])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert cache.load(mlp_onnx)[1].cache == "hit"


def test_load_breakdown_has_every_stage(mlp_onnx):
    stages = load_breakdown(mlp_onnx, repeats=1, steady_runs=2)
    assert set(stages) == {"file_read", "graph_optimization", "session_creation", "first_inference",
                           "steady_inference"}
    assert all(v >= 0 for v in stages.values()) and stages["session_creation"] > 0
    with pytest.raises(ConfigError):
        load_breakdown(mlp_onnx, repeats=0)


class Fake(PredictorBase):
    def __init__(self, key: str) -> None:
        self.name = key


def test_pool_evicts_least_recently_used_and_closes_it():
    loads = []
    pool = EnginePool(lambda k: loads.append(k) or Fake(k), max_engines=2, size_of=lambda e: 10)
    a = pool.get("a")
    pool.get("b")
    pool.get("a")
    pool.get("c")  # evicts b
    assert pool.keys() == ["a", "c"] and not a.closed
    pool.get("b")  # reloads b, evicts a
    assert a.closed and loads == ["a", "b", "c", "b"]
    stats = pool.stats()
    assert (stats["hits"], stats["loads"], stats["evictions"], stats["engines"]) == (1, 4, 2, 2)
    pool.close()
    assert pool.stats()["engines"] == 0


def test_pool_memory_bound_and_leases():
    sizes = {"big": 60, "mid": 40, "small": 10}
    pool = EnginePool(Fake, max_engines=10, max_bytes=100, size_of=lambda e: sizes[e.name])
    pool.get("big")
    pool.get("mid")
    assert pool.stats()["bytes"] == 100
    with pool.lease("big") as big:
        pool.get("small")  # over 100: the idle LRU ("mid") goes, not the leased "big"
        assert pool.keys() == ["big", "small"] and not big.closed
    assert pool.stats()["bytes"] == 70
    with pytest.raises(ConfigError, match="max_bytes"):
        EnginePool(Fake, max_bytes=5, size_of=lambda e: 6).get("x")
    for bad in ({"max_engines": 0}, {"max_bytes": -1}):
        with pytest.raises(ConfigError):
            EnginePool(Fake, **bad)


def test_pool_loads_a_key_once_under_concurrency():
    loads = []

    def slow(key):
        loads.append(key)
        time.sleep(0.05)
        return Fake(key)

    pool = EnginePool(slow, max_engines=4, size_of=lambda e: 1)
    got = run_threads(lambda _: pool.get("m"), 6)
    assert loads == ["m"] and len({id(e) for e in got}) == 1


def test_pool_with_real_engines_measures_memory(mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    with EnginePool(lambda k: OnnxRuntimeEngine(mlp_onnx, name=k), max_engines=1) as pool:
        first = pool.get("one")
        assert pool.stats()["bytes"] >= mlp_onnx.stat().st_size
        pool.get("two")
        assert first.closed and pool.keys() == ["two"]


@pytest.fixture(scope="module")
def reflect_pad_onnx(tmp_path_factory):
    """Dynamic spatial sizes, but a Reshape to 64 values: runs on the user's 8x8 images, not on synthetic ones."""
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 64])
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["flat"]),
                               helper.make_node("Relu", ["flat"], ["y"])], "reshape",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("pad") / "pad.onnx"
    onnx.save(model, str(path))
    return path


def test_the_probe_runs_on_the_users_feeds_and_says_so(tmp_path, reflect_pad_onnx):
    cache = OptimizedModelCache(tmp_path)
    with pytest.warns(RuntimeWarning, match="pass input_shapes or data"):
        _, report = cache.load(reflect_pad_onnx)
    assert report.cache == "rejected" and report.checked_with.startswith("synthetic")
    feeds = {"x": np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)}
    engine, report = cache.load(reflect_pad_onnx, feeds=feeds)
    assert report.cache == "miss" and report.checked_with == "the given feeds (x[1, 1, 8, 8])"
    engine, report = cache.load(reflect_pad_onnx)  # the stored probe checks the entry, no feeds needed
    assert report.cache == "hit" and report.checked_with == "the given feeds (x[1, 1, 8, 8])"
    assert engine.predict(feeds)["y"].shape == (1, 64)
    assert load_breakdown(reflect_pad_onnx, repeats=1, steady_runs=1, feeds=feeds)["first_inference"] > 0


def test_a_cached_graph_that_differs_is_rejected_with_the_reason(tmp_path, mlp_onnx):
    from kit.loading.optimized_cache import _mismatch

    want = {"p": np.array([[0.1, 0.9]], np.float32)}
    assert _mismatch(want, want) is None
    assert "atol" in _mismatch({"p": want["p"] + 0.01}, want)
    assert "NaN" in _mismatch({"p": np.array([[np.nan, 0.9]], np.float32)}, want)
    assert "missing" in _mismatch({"q": want["p"]}, want)

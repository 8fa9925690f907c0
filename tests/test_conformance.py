"""One conformance suite: the same checks over every engine and every wrapper.

Each factory returns a fresh Predictor over the same two-layer MLP (``features`` float32
[batch, 16] -> ``probabilities`` [batch, 10]); TensorFlow-based ones are built from an
equivalent Keras model. The list is explicit: every Predictor class the kit defines must
be in ``COVERS``, so a new or renamed one cannot slip out of the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kit.engines.base import Predictor, Wrapper
from kit.errors import Closed, InputError
from kit.specs import TensorSpec
from kit.testing import run_threads

Factory = Callable[[dict[str, Path]], Predictor]


def _ort(paths):
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    return OnnxRuntimeEngine(paths["onnx"])


def _tensorflow(paths):
    from kit.engines.tensorflow import TensorFlowEngine
    return TensorFlowEngine(paths["savedmodel"])


def _tflite(paths):
    from kit.engines.tflite import TFLiteEngine
    return TFLiteEngine(paths["tflite"])


def _plain_wrapper(paths):
    return Wrapper(_ort(paths))


def _iobound(paths):
    from kit.engines.iobinding import IoBoundEngine
    return IoBoundEngine(_ort(paths))  # on the CPU provider here: the same binding code path


class _Served(Wrapper):
    """A TF Serving client whose ``kit serve`` server lives (and closes) with it."""

    def __init__(self, paths, protocol: str) -> None:
        from kit.engines.tfserving import TFServingEngine
        from kit.tfserving.server import ModelServer

        self.server = ModelServer({"mlp": _ort(paths)}, close_models=True).start()
        super().__init__(TFServingEngine(getattr(self.server, f"{protocol}_url"), "mlp"))

    def close(self) -> None:
        super().close()
        self.server.stop()


def _registry(paths, view: bool):
    import shutil

    from kit.tfserving.versions import ModelRegistry

    base = paths["onnx"].parent / f"registry-{id(paths)}-{view}"
    shutil.rmtree(base, ignore_errors=True)
    registry = ModelRegistry(base, name="mlp")
    registry.register(paths["onnx"], version=1)
    registry.poll()
    if not view:
        return registry
    return _Owning(registry.predictor(version=1), registry)


class _Owning(Wrapper):
    """A registry's version view, closing the registry it looks through."""

    def __init__(self, view, registry) -> None:
        super().__init__(view)
        self.registry = registry

    def close(self) -> None:
        super().close()
        self.registry.close()


def _on_ort(build: Callable[[Predictor], Predictor]) -> Factory:
    return lambda paths: build(_ort(paths))


def _cache(inner):
    from kit.serve.cache import CacheConfig, ResultCache
    return ResultCache(inner, CacheConfig(max_entries=64))


def _per_sample_cache(inner):
    from kit.serve.cache import CacheConfig, ResultCache
    return ResultCache(inner, CacheConfig(max_entries=64, per_sample=True))


def _batcher(inner):
    from kit.serve.batching import BatchingConfig, DynamicBatcher
    return DynamicBatcher(inner, BatchingConfig(max_batch_size=8, batch_timeout_micros=500))


def _retry(inner):
    from kit.serve.resilience import Retry
    return Retry(inner)


def _breaker(inner):
    from kit.serve.resilience import CircuitBreaker
    return CircuitBreaker(inner)


def _router(inner):
    from kit.serve.routing import Router
    return Router({"primary": inner})


def _timeout(inner):
    from kit.serve.resilience import Timeout
    return Timeout(inner, timeout_s=30.0)


def _faults_off(inner):
    from kit.serve.faults import FaultInjector
    return FaultInjector(inner)


def _ledgered(inner):
    from kit.serve.ledger import Ledgered
    return Ledgered(inner)


def _instrumented(inner):
    from kit.profile.metrics import Instrumented, MetricsRecorder
    return Instrumented(inner, MetricsRecorder())


def _scaling_pool(inner):
    from kit.serve.scaling import ScalingConfig, ScalingPool
    return ScalingPool(inner, ScalingConfig(min_workers=2, max_workers=2), autoscale=False)


# Every Predictor the kit ships, listed by hand: a renamed or new one must be added here, and
# tests/test_conformance.py::test_every_predictor_class_is_listed fails until it is.
FACTORIES: dict[str, Factory] = {
    "onnxruntime": _ort,
    "iobound": _iobound,
    "tfserving_grpc": lambda paths: _Served(paths, "grpc"),
    "tfserving_rest": lambda paths: _Served(paths, "rest"),
    "registry": lambda paths: _registry(paths, view=False),
    "registry_view": lambda paths: _registry(paths, view=True),
    "wrapper": _plain_wrapper,
    "cache": _on_ort(_cache),
    "cache_per_sample": _on_ort(_per_sample_cache),
    "batcher": _on_ort(_batcher),
    "retry": _on_ort(_retry),
    "breaker": _on_ort(_breaker),
    "timeout": _on_ort(_timeout),
    "router": _on_ort(_router),
    "fault_injector_off": _on_ort(_faults_off),
    "ledgered": _on_ort(_ledgered),
    "instrumented": _on_ort(_instrumented),
    "scaling_pool": _on_ort(_scaling_pool),
}
TF_FACTORIES: dict[str, Factory] = {"tensorflow": _tensorflow, "tflite": _tflite}
COVERS = {"OnnxRuntimeEngine": "onnxruntime", "IoBoundEngine": "iobound", "TFServingEngine": "tfserving_grpc",
          "ModelRegistry": "registry", "VersionView": "registry_view", "Wrapper": "wrapper", "ResultCache": "cache",
          "DynamicBatcher": "batcher", "Retry": "retry", "CircuitBreaker": "breaker", "Timeout": "timeout",
          "Router": "router", "FaultInjector": "fault_injector_off", "Ledgered": "ledgered",
          "Instrumented": "instrumented", "ScalingPool": "scaling_pool", "TensorFlowEngine": "tensorflow",
          "TFLiteEngine": "tflite"}
"""Each Predictor class the kit defines -> the factory that puts it through the suite."""


def test_every_predictor_class_is_listed():
    import importlib
    import inspect
    import pkgutil

    import kit
    from kit.engines.base import PredictorBase

    found = set()
    for info in pkgutil.walk_packages(kit.__path__, "kit."):
        if info.name.startswith("kit.notebooks"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, PredictorBase) and obj.__module__ == info.name \
                    and not name.startswith("_") and obj is not PredictorBase:
                found.add(name)
    assert found == set(COVERS), f"not in the suite: {sorted(found - set(COVERS))}; gone: {sorted(set(COVERS) - found)}"
    assert set(COVERS.values()) <= set(FACTORIES) | set(TF_FACTORIES)


@pytest.fixture(scope="session")
def mlp_paths(mlp_onnx) -> dict[str, Path]:
    return {"onnx": mlp_onnx}


@pytest.fixture(scope="session")
def tf_mlp_paths(tmp_path_factory) -> dict[str, Path]:
    """The same MLP shape in Keras, exported as a SavedModel and a TFLite file."""
    pytest.importorskip("tensorflow")
    from kit._quiet import import_tensorflow

    tf = import_tensorflow()
    root = tmp_path_factory.mktemp("tf_mlp")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])

    def serve(features):
        return {"probabilities": model(features)}

    archive = keras.export.ExportArchive()  # freezes Keras 3 variables for the TFLite converter
    archive.track(model)
    archive.add_endpoint("serving_default", tf.function(
        serve, input_signature=[tf.TensorSpec([None, 16], tf.float32, name="features")]))
    archive.write_out(str(root / "sm"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(root / "sm"))
    (root / "mlp.tflite").write_bytes(converter.convert())
    return {"savedmodel": root / "sm", "tflite": root / "mlp.tflite"}


PARAMS = [pytest.param((n, f), id=n) for n, f in FACTORIES.items()] + \
    [pytest.param((n, f), id=n, marks=pytest.mark.tensorflow) for n, f in TF_FACTORIES.items()]


@pytest.fixture(params=PARAMS)
def predictor(request, mlp_paths):
    name, factory = request.param
    paths = dict(mlp_paths)
    if name in TF_FACTORIES:
        paths.update(request.getfixturevalue("tf_mlp_paths"))
    p = factory(paths)
    yield p
    p.close()


def _feeds(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"features": np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)}


def test_specs_describe_the_model(predictor):
    assert isinstance(predictor, Predictor)
    (inp,) = predictor.input_specs
    (out,) = predictor.output_specs
    assert isinstance(inp, TensorSpec) and inp.name == "features" and inp.dtype == np.float32
    assert inp.shape[-1] == 16 and out.name == "probabilities" and out.shape[-1] == 10


@pytest.mark.parametrize("batch", [1, 3])
def test_dict_in_dict_out_with_right_shapes_and_dtypes(predictor, batch):
    out = predictor.predict(_feeds(batch))
    assert set(out) == {"probabilities"}
    probs = out["probabilities"]
    assert probs.shape == (batch, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


def test_same_answer_for_a_row_alone_or_in_a_batch(predictor):
    feeds = _feeds(4, seed=3)
    whole = predictor.predict(feeds)["probabilities"]
    single = predictor.predict({"features": feeds["features"][2:3]})["probabilities"]
    np.testing.assert_allclose(single[0], whole[2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad, words", [
    ({"wrong_name": np.zeros((1, 16), np.float32)}, ["features"]),
    ({"features": np.zeros((1, 16), np.float64)}, ["float32"]),
    ({"features": np.zeros((1, 7), np.float32)}, ["16"]),
    ({"features": np.zeros((16,), np.float32)}, ["rank"]),
])
def test_bad_inputs_raise_input_error_naming_the_expectation(predictor, bad, words):
    with pytest.raises(InputError) as info:
        predictor.predict(bad)
    for word in words:
        assert word in str(info.value)


def test_close_twice_and_predict_after_close(predictor):
    predictor.close()
    predictor.close()
    with pytest.raises(Closed):
        predictor.predict(_feeds(1))


def test_context_manager_closes(mlp_paths):
    with _ort(mlp_paths) as p:
        p.predict(_feeds(1))
    with pytest.raises(Closed):
        p.predict(_feeds(1))


def test_thread_safe_under_concurrent_calls(predictor):
    inputs = [_feeds(2, seed=i) for i in range(8)]
    expected = [predictor.predict(f)["probabilities"] for f in inputs]

    def worker(k: int) -> None:
        for i in range(10):
            j = (i + k) % len(inputs)
            np.testing.assert_allclose(predictor.predict(inputs[j])["probabilities"], expected[j],
                                       rtol=1e-5, atol=1e-6)

    run_threads(worker, 4)


def test_non_native_byte_order_is_read_as_the_same_values(predictor):
    feeds = _feeds(3, seed=5)
    native = predictor.predict(feeds)["probabilities"]
    swapped = predictor.predict({"features": feeds["features"].astype(">f4")})["probabilities"]
    np.testing.assert_allclose(swapped, native, rtol=1e-5, atol=1e-6)


def test_empty_batch_is_refused_by_every_predictor(predictor):
    with pytest.raises(InputError, match="empty batch"):
        predictor.predict({"features": np.zeros((0, 16), np.float32)})


def test_nested_lists_convert_exactly_or_are_refused(predictor):
    """Lists of numbers convert to the spec's dtype (floats to a float dtype, ints that fit); others are refused."""
    feeds = _feeds(2, seed=6)
    native = predictor.predict(feeds)["probabilities"]
    listed = predictor.predict({"features": feeds["features"].tolist()})["probabilities"]
    np.testing.assert_allclose(listed, native, rtol=1e-5, atol=1e-6)
    ints = predictor.predict({"features": [[1] * 16]})["probabilities"]
    assert ints.shape == (1, 10)
    with pytest.raises(InputError):
        predictor.predict({"features": [["a"] * 16]})


def test_a_missing_input_is_an_input_error_without_runtime_noise(predictor, capfd):
    capfd.readouterr()
    with pytest.raises(InputError, match="features"):
        predictor.predict({})
    err = capfd.readouterr().err
    assert "onnxruntime" not in err.lower() and "[E:" not in err, err

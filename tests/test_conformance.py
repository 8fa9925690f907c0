"""One conformance suite: the same checks over every engine and every wrapper.

Each factory returns a fresh Predictor over the same two-layer MLP (``features`` float32
[batch, 16] -> ``probabilities`` [batch, 10]); TensorFlow-based ones are built from an
equivalent Keras model. A new engine or wrapper joins by adding one factory here.
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


FACTORIES: dict[str, Factory] = {"onnxruntime": _ort, "wrapper": _plain_wrapper}
TF_FACTORIES: dict[str, Factory] = {"tensorflow": _tensorflow, "tflite": _tflite}


def _optional(name: str, module: str, build: Callable[[Predictor], Predictor]) -> None:
    """Register a wrapper factory if its module exists (it lands independently)."""
    import importlib.util
    if importlib.util.find_spec(module) is not None:
        FACTORIES[name] = lambda paths: build(_ort(paths))


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


_optional("cache", "kit.serve.cache", _cache)
_optional("cache_per_sample", "kit.serve.cache", _per_sample_cache)
_optional("timeout", "kit.serve.resilience", _timeout)
_optional("fault_injector_off", "kit.serve.faults", _faults_off)
_optional("ledgered", "kit.serve.ledger", _ledgered)
_optional("batcher", "kit.serve.batching", _batcher)
_optional("retry", "kit.serve.resilience", _retry)
_optional("breaker", "kit.serve.resilience", _breaker)
_optional("router", "kit.serve.routing", _router)
_optional("instrumented", "kit.profile.metrics", _instrumented)


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

"""TFLiteEngine: signature names, dynamic batch, int8 scaling at the edges, bad inputs, threads."""

from __future__ import annotations

import numpy as np
import pytest

from kit.errors import Closed, ConfigError, InputError, ModelLoadError
from kit.testing import run_threads

pytestmark = pytest.mark.tensorflow

WEIGHTS = np.linspace(-1.0, 1.0, 8 * 4, dtype=np.float32).reshape(8, 4)


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory):
    """A float32 model and its full-int8 twin (int8 input and output), from one SavedModel."""
    tf = pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("tflite_engine")
    module = tf.Module()
    module.w = tf.Variable(WEIGHTS)

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="features")])
    def serve(features):
        return {"scores": tf.nn.relu(tf.matmul(features, module.w))}

    module.serve = serve
    tf.saved_model.save(module, str(root / "sm"), signatures={"serving_default": serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(root / "sm"))
    (root / "float.tflite").write_bytes(converter.convert())

    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(root / "sm"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.uniform(0, 1, (1, 8)).astype(np.float32)] for _ in range(50))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (root / "int8.tflite").write_bytes(converter.convert())
    return {"float": root / "float.tflite", "int8": root / "int8.tflite"}


def _reference(x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ WEIGHTS, 0.0)


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (batch, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def engine(tflite_models):
    from kit.engines.tflite import TFLiteEngine

    with TFLiteEngine(tflite_models["float"], intra_op_num_threads=1) as eng:
        yield eng


def test_names_and_specs_come_from_the_signature(engine):
    assert [str(s) for s in engine.input_specs] == ["features: float32[?, 8]"]
    assert [str(s) for s in engine.output_specs] == ["scores: float32[?, 4]"]
    assert engine.describe()["runtime"] == "ai_edge_litert"


def test_batch_changes_resize_the_interpreter(engine):
    for batch in (1, 3, 3, 1, 7):
        x = _x(batch, seed=batch)
        out = engine.predict({"features": x})["scores"]
        assert out.shape == (batch, 4)
        np.testing.assert_allclose(out, _reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("feeds, words", [
    ({"features": np.zeros((2, 8), np.float64)}, "float64"),
    ({"features": np.zeros((2, 5), np.float32)}, "expected"),
    ({"inputs": np.zeros((2, 8), np.float32)}, "missing"),
])
def test_bad_inputs_raise_input_error_listing_the_specs(engine, feeds, words):
    with pytest.raises(InputError, match=words) as info:
        engine.predict(feeds)
    assert "features: float32[?, 8]" in str(info.value)
    np.testing.assert_allclose(engine.predict({"features": _x(2)})["scores"], _reference(_x(2)), atol=1e-5)


def test_int8_model_takes_and_returns_float32_scaled(tflite_models):
    from kit.engines.tflite import TFLiteEngine

    with TFLiteEngine(tflite_models["int8"]) as eng:
        assert eng.input_specs[0].dtype == np.float32 and eng.output_specs[0].dtype == np.float32
        info = eng.describe()
        assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
        assert info["inputs"][0]["scale"] > 0
        x = _x(16, seed=3)
        out = eng.predict({"features": x})["scores"]
    assert out.dtype == np.float32
    reference = _reference(x)
    # int8 steps: about 1/255 of the calibrated ranges on each side, plus rounding on the way
    assert np.max(np.abs(out - reference)) < 0.05 * max(1.0, float(reference.max()))


def test_concurrent_calls_are_serialized_and_correct(engine):
    def worker(seed: int) -> None:
        for i in range(20):
            x = _x(1 + (seed + i) % 4, seed=seed * 100 + i)
            out = engine.predict({"features": x})["scores"]
            assert np.allclose(out, _reference(x), atol=1e-5), f"thread {seed} call {i} got a wrong answer"

    run_threads(worker, 4)


def test_load_errors_and_bad_settings(tflite_models, tmp_path):
    from kit.engines.tflite import TFLiteEngine

    with pytest.raises(ModelLoadError, match="not found"):
        TFLiteEngine(tmp_path / "missing.tflite")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelLoadError):
        TFLiteEngine(tmp_path / "junk.tflite")
    with pytest.raises(ModelLoadError, match="no signature 'predict'.*serving_default"):
        TFLiteEngine(tflite_models["float"], signature="predict")
    with pytest.raises(ConfigError, match="intra_op_num_threads"):
        TFLiteEngine(tflite_models["float"], intra_op_num_threads=0)


def test_close_is_idempotent_and_predict_after_close_fails(tflite_models):
    from kit.engines import create_engine
    from kit.engines.tflite import TFLiteEngine

    eng = create_engine(tflite_models["float"])
    assert isinstance(eng, TFLiteEngine)
    eng.close()
    eng.close()
    with pytest.raises(Closed):
        eng.predict({"features": _x(1)})


def test_loading_and_running_print_nothing_to_stderr(tflite_models, capfd):
    """LiteRT announces its XNNPACK delegate on fd 2; reports must not show it."""
    from kit.engines.tflite import TFLiteEngine

    capfd.readouterr()
    engine = TFLiteEngine(tflite_models["float"])
    engine.predict({"features": np.ones((2, 8), np.float32)})
    engine.close()
    assert capfd.readouterr().err == ""

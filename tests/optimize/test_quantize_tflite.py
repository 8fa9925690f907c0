"""TFLite post-training quantization of a tiny Keras SavedModel, in every mode."""

from __future__ import annotations

import numpy as np
import pytest

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, InputError, QuantizationError
from kit.optimize.quantize_tflite import TFLITE_MODES, TFLiteQuantConfig, quantize_tflite

pytestmark = [pytest.mark.tensorflow, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_savedmodel(tmp_path_factory) -> ModelArtifact:
    from kit.engines.tensorflow import import_tensorflow

    tf = import_tensorflow()
    keras = tf.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    path = tmp_path_factory.mktemp("tfl") / "tiny_sm"
    keras.Model(inputs, outputs).export(str(path), verbose=False)
    return ModelArtifact.from_path(path, name="tiny")


def _samples(n=16):
    return {"image": np.random.default_rng(0).random((n, 8, 8, 1), dtype=np.float32)}


@pytest.mark.parametrize("mode", TFLITE_MODES)
def test_every_mode_runs_with_the_same_names(tiny_savedmodel, tmp_path, mode):
    from kit.engines.tensorflow import TensorFlowEngine
    from kit.engines.tflite import TFLiteEngine

    art = quantize_tflite(tiny_savedmodel, _samples(), mode=mode, out=tmp_path / f"{mode}.tflite")
    assert art.format == "tflite" and art.parent is tiny_savedmodel and art.transform == f"tflite_{mode}"
    assert art.params["representative_samples_used"] == (16 if mode in ("full_integer", "integer_float_fallback")
                                                          else 0)
    feeds = {"image": _samples(4)["image"]}
    with TFLiteEngine(art) as engine, TensorFlowEngine(tiny_savedmodel) as reference:
        real_input = engine.describe().get("inputs", [{}])[0] if mode == "full_integer" else None
        got = engine.predict(feeds)
        want = reference.predict(feeds)
    out = next(iter(got.values()))
    assert out.shape == (4, 10) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert np.max(np.abs(out - next(iter(want.values())))) < 0.05
    if real_input is not None:
        assert real_input.get("dtype") == "int8"


@pytest.mark.parametrize("data, match", [(None, "needs representative data"),
                                         ({"image": np.zeros((0, 8, 8, 1), np.float32)}, "empty"),
                                         ({"image": np.zeros((3, 9, 9, 1), np.float32)}, "expected"),
                                         ({"pixels": np.zeros((3, 8, 8, 1), np.float32)}, "missing")])
def test_bad_representative_data_is_a_clear_error(tiny_savedmodel, tmp_path, data, match):
    with pytest.raises(InputError, match=match) as info:
        quantize_tflite(tiny_savedmodel, data, mode="full_integer", out=tmp_path / "q.tflite")
    assert "image: float32" in str(info.value)
    assert not (tmp_path / "q.tflite").exists()


def test_non_savedmodel_and_bad_mode(tmp_path, conv_onnx):
    with pytest.raises(ConfigError, match="mode must be one of"):
        TFLiteQuantConfig(mode="int4")
    with pytest.raises(QuantizationError, match="converts a SavedModel"):
        quantize_tflite(ModelArtifact.from_path(conv_onnx), out=tmp_path / "q.tflite")


def test_tflite_variants_evaluate_against_the_savedmodel(tiny_savedmodel, tmp_path):
    from kit.optimize.evaluate import evaluate

    variants = [quantize_tflite(tiny_savedmodel, _samples(), mode=m, out=tmp_path / f"{m}.tflite")
                for m in ("dynamic_range", "full_integer")]
    frame = evaluate(variants, tiny_savedmodel, _samples(8), batch_sizes=(1,), min_duration_s=0.05, rounds=1,
                     min_queries=2)
    assert list(frame["format"]) == ["savedmodel", "tflite", "tflite"]
    assert frame["ok"].all() and (frame["cosine"] > 0.99).all() and frame["p50_ms"].notna().all()

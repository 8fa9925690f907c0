"""SavedModel -> ONNX / TFLite: names and batch kept, agreement recorded, failures are ConversionErrors."""

from __future__ import annotations

import numpy as np
import pytest

from kit.artifacts import ModelArtifact
from kit.errors import ConversionError
from kit.optimize.convert import savedmodel_to_onnx, savedmodel_to_tflite
from kit.optimize.quality import check_inputs


def _export(tf, path, fn, spec, model=None):
    """Export ``fn`` as ``serving_default`` the Keras 3 way (ExportArchive), as the zoo does."""
    import keras

    archive = keras.export.ExportArchive()
    if model is not None:
        archive.track(model)
    archive.add_endpoint("serving_default", tf.function(fn, input_signature=[spec]))
    archive.write_out(str(path), verbose=False)
    return ModelArtifact.from_path(path, name=path.name)


@pytest.fixture(scope="module")
def savedmodels(tmp_path_factory):
    """A small classifier (image -> probabilities) and one using erfc, which ONNX Runtime lacks."""
    tf = pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("convert")
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    spec = tf.TensorSpec([None, 8, 8, 1], tf.float32, name="image")
    classifier = _export(tf, root / "classifier", lambda image: {"probabilities": model(image)}, spec,
                         model=model)
    erfc = _export(tf, root / "erfc", lambda x: {"y": tf.math.erfc(x)},
                   tf.TensorSpec([None, 4], tf.float32, name="x"))
    # Keras 3 variables inside a plain tf.Module: the TFLite converter leaves them unfrozen (NaN out)
    module = tf.Module()
    module.model = model
    module.serve = tf.function(lambda image: {"probabilities": model(image)}, input_signature=[spec])
    tf.saved_model.save(module, str(root / "in_module"), signatures={"serving_default": module.serve})
    return {"classifier": classifier, "erfc": erfc, "in_module": ModelArtifact.from_path(root / "in_module")}


@pytest.mark.tensorflow
def test_onnx_conversion_keeps_names_and_batch_and_records_agreement(savedmodels, tmp_path):
    import onnx

    source = savedmodels["classifier"]
    art = savedmodel_to_onnx(source, tmp_path / "c.onnx")
    assert art.format == "onnx" and art.parent is source and art.transform == "to_onnx"
    assert art.params["opset"] == 17
    assert art.metrics["max_abs_error"] < 1e-4 and art.metrics["cosine"] > 0.9999
    proto = onnx.load(str(art.path))
    assert proto.ir_version <= 10
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "to_onnx(opset=17" in art.describe()


@pytest.mark.tensorflow
def test_tflite_conversion_keeps_names_and_records_agreement(savedmodels, tmp_path):
    from kit.engines.tflite import TFLiteEngine

    feeds = {"image": np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 1)).astype(np.float32)}
    art = savedmodel_to_tflite(savedmodels["classifier"].path, tmp_path / "c.tflite", feeds=feeds)
    assert art.format == "tflite" and art.parent.format == "savedmodel"
    assert art.metrics["agreement_batch"] == 3 and art.metrics["cosine"] > 0.9999
    with TFLiteEngine(art) as eng:
        assert [s.name for s in eng.input_specs] == ["image"]
        assert [s.name for s in eng.output_specs] == ["probabilities"]


@pytest.mark.tensorflow
def test_disagreement_beyond_tolerance_raises_and_leaves_no_file(savedmodels, tmp_path):
    target = tmp_path / "strict.onnx"
    with pytest.raises(ConversionError, match="disagrees with its source"):
        savedmodel_to_onnx(savedmodels["classifier"], target, min_cosine=1.5)
    assert not target.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.tensorflow
def test_a_model_onnx_runtime_cannot_run_is_a_conversion_error(savedmodels, tmp_path):
    with pytest.raises(ConversionError, match="does not run"):
        savedmodel_to_onnx(savedmodels["erfc"], tmp_path / "erfc.onnx")
    assert not (tmp_path / "erfc.onnx").exists()


@pytest.mark.tensorflow
def test_nan_from_a_conversion_is_caught_with_a_hint(savedmodels, tmp_path):
    # unfrozen variables give NaN on some runs and garbage on others: both must be caught, with the cure
    with pytest.raises(ConversionError, match="(NaN or inf|disagrees).*model.export"):
        savedmodel_to_tflite(savedmodels["in_module"], tmp_path / "m.tflite")


@pytest.mark.tensorflow
def test_unknown_signature_is_a_conversion_error(savedmodels, tmp_path):
    with pytest.raises(ConversionError, match="predict"):
        savedmodel_to_tflite(savedmodels["classifier"], tmp_path / "x.tflite", signature="predict")


def test_source_must_be_a_savedmodel(add_onnx, tmp_path):
    with pytest.raises(ConversionError, match="expected a savedmodel model.*keras_to_savedmodel"):
        savedmodel_to_onnx(add_onnx, tmp_path / "x.onnx")


def test_check_inputs_name_the_data_they_take():
    from kit.data import load_data
    from kit.specs import TensorSpec

    assert check_inputs(None) == (None, "")
    feeds, note = check_inputs({"x": np.zeros((3, 4), np.float32)})
    assert feeds["x"].shape == (3, 4) and note == "the given feeds (x[3, 4])"
    specs = (TensorSpec("x", np.dtype(np.float32), ("batch", 4)),)
    data = load_data(None, specs, samples=20)
    feeds, note = check_inputs(data, samples=5)
    assert feeds["x"].shape == (5, 4) and note.startswith("the first 5 sample(s) of synthetic inputs")


@pytest.mark.tensorflow
def test_conversion_checks_on_a_dataset_and_says_so(savedmodels, tmp_path):
    from kit.data import load_data

    data = load_data({"image": np.random.default_rng(0).random((3, 8, 8, 1), np.float32)},
                     _specs(savedmodels["classifier"]))
    art = savedmodel_to_onnx(savedmodels["classifier"], tmp_path / "c.onnx", feeds=data)
    assert art.metrics["agreement_batch"] == 3 and "3 samples" in art.metrics["checked_with"]
    assert art.metrics["quality_ok"] is True


def _specs(art):
    from kit.engines.tensorflow import TensorFlowEngine

    with TensorFlowEngine(art) as engine:
        return engine.input_specs

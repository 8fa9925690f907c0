"""kit.models: one resolver for a zoo name or a user's model path, formats derived on demand."""

from __future__ import annotations

import shutil

import pytest
from onnx_models import make_external_data_model, make_state_model

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError
from kit.models import (
    FormatUnavailable,
    available_formats,
    content_digest,
    open_model,
    resolve_model,
)


def test_onnx_path_resolves_to_a_source_artifact(tmp_path):
    path = make_state_model(tmp_path / "vad.onnx")
    art = resolve_model(str(path))
    assert (art.format, art.name, art.path, art.transform) == ("onnx", "vad", path, "source")
    assert resolve_model(art) is art and resolve_model(path, format="onnx") == art


def test_external_data_model_keeps_its_folder(tmp_path):
    import onnxruntime as ort

    path = make_external_data_model(tmp_path / "big" / "ext.onnx")
    assert (tmp_path / "big" / "ext.onnx.data").is_file()
    art = resolve_model(path)
    assert art.path == path
    data = tmp_path / "big" / "ext.onnx.data"
    assert art.size_bytes == path.stat().st_size + data.stat().st_size  # the weights count in its size
    ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])  # weights found beside it
    digest = content_digest(path)
    (tmp_path / "big" / "ext.onnx.data").write_bytes(b"\0" * (512 * 512 * 4))
    assert content_digest(path) != digest, "the external weights are part of the model's identity"


def test_external_data_missing_is_one_line(tmp_path):
    path = make_external_data_model(tmp_path / "ext.onnx")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(str(path), str(moved / "ext.onnx"))
    with pytest.raises(ConfigError, match=r"external data file\(s\) \['ext.onnx.data'\].*keep the model's folder"):
        resolve_model(moved / "ext.onnx")


@pytest.mark.parametrize("name, content, needle", [
    ("notes.onnx", b"this is not a model\n", "is not an ONNX model"),
    ("empty.onnx", b"", "is not an ONNX model"),
    ("fake.tflite", b"hello world, not a flatbuffer", "is not a TFLite model"),
    ("fake.keras", b"PK not really a zip", "is not a Keras archive"),
    ("model.txt", b"x", "cannot tell the format"),
])
def test_a_file_that_is_not_a_model(tmp_path, name, content, needle):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=needle) as info:
        resolve_model(tmp_path / name)
    assert "\n" not in str(info.value)


def test_missing_path_and_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*expected a zoo name, a .onnx"):
        resolve_model(tmp_path / "nope.onnx")
    with pytest.raises(ConfigError, match="not a zoo model.*mobilenet_v2"):
        resolve_model("mobilenet")
    with pytest.raises(ConfigError, match="'bert_encoder' is retired: use 'minilm'"):
        resolve_model("bert_encoder")
    with pytest.raises(ConfigError, match="not a SavedModel"):
        resolve_model(tmp_path)  # a random folder
    with pytest.raises(ConfigError, match="unknown model format"):
        resolve_model(tmp_path, format="pytorch")
    with pytest.raises(ConfigError, match="TF Serving address"):
        open_model("grpc://localhost:8500")
    with pytest.raises(ConfigError, match="got int"):
        resolve_model(3)


def test_formats_the_kit_cannot_get_say_why(tmp_path):
    onnx_art = resolve_model(make_state_model(tmp_path / "vad.onnx"))
    formats = available_formats(onnx_art)
    assert formats["onnx"] is None and "no ONNX -> TensorFlow converter" in formats["savedmodel"]
    with pytest.raises(FormatUnavailable, match="no ONNX -> TensorFlow converter") as info:
        resolve_model(onnx_art, format="tflite")
    assert isinstance(info.value, ConfigError) and info.value.reason == str(info.value)
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    formats = available_formats(tfl)
    assert formats["tflite"] is None and all("TFLite flatbuffer" in formats[f] for f in ("onnx", "savedmodel"))
    assert "does not write them" in formats["keras"]


def test_savedmodel_folder_resolves(tmp_path):
    sm = tmp_path / "exported"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"")
    art = resolve_model(sm)
    assert art.format == "savedmodel" and art.name == "exported"
    assert available_formats(art)["savedmodel"] is None


def test_zoo_names_go_to_the_zoo(monkeypatch, tmp_path):
    import kit.zoo

    calls = []
    monkeypatch.setattr(kit.zoo, "get_model", lambda name, format="onnx": calls.append((name, format)) or
                        ModelArtifact(tmp_path / "m.onnx", format))
    assert resolve_model("digits_cnn").format == "onnx"
    resolve_model("digits_cnn", format="tflite")
    assert calls == [("digits_cnn", "onnx"), ("digits_cnn", "tflite")]
    with pytest.raises(FormatUnavailable, match="not keras"):
        resolve_model("digits_cnn", format="keras")
    formats = available_formats("mobilenet_v2")  # builds nothing
    assert calls == [("digits_cnn", "onnx"), ("digits_cnn", "tflite")] and formats["tflite"] is None
    assert "not keras" in formats["keras"]
    ocr = available_formats("ocr_rec")  # ONNX only: notebooks must skip their SavedModel/TFLite sections
    assert ocr["onnx"] is None and "onnx only" in ocr["savedmodel"] and ocr["tflite"]


@pytest.mark.tensorflow
@pytest.mark.slow
def test_keras_file_derives_savedmodel_onnx_and_tflite_once(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    from kit._quiet import import_tensorflow

    import_tensorflow()
    import keras

    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax")])
    model.save(tmp_path / "user.keras")
    art = resolve_model(tmp_path / "user.keras", format="onnx")
    assert [a.transform for a in art.lineage()] == ["source", "to_savedmodel", "to_onnx"]
    assert art.format == "onnx" and art.path.is_file() and art.metrics["cosine"] > 0.9999
    tfl = resolve_model(tmp_path / "user.keras", format="tflite")
    assert tfl.path.is_file() and tfl.parent.path == art.parent.path  # one SavedModel, reused

    import kit.models

    def boom(*args, **kwargs):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(kit.models, "_convert_in_child", boom)
    again = resolve_model(tmp_path / "user.keras", format="onnx")
    assert again.path == art.path and again.metrics == art.metrics


@pytest.mark.tensorflow
def test_a_failed_conversion_is_one_line_and_leaves_no_cache_entry(tmp_path, monkeypatch):
    import zipfile

    from kit.errors import ConversionError
    from kit.models import derived_root

    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    with zipfile.ZipFile(tmp_path / "broken.keras", "w") as z:
        z.writestr("config.json", "{not json")
    with pytest.raises(ConversionError, match="converting broken \\(keras\\) to savedmodel failed: .*") as info:
        resolve_model(tmp_path / "broken.keras", format="savedmodel")
    assert "\n" not in str(info.value)
    assert not [p for p in derived_root().glob("*") if p.is_dir()]


def test_model_data_gives_zoo_samples_with_labels_and_synthetic_inputs_for_a_path(tmp_path):
    import kit
    from kit.models import model_data

    art = kit.resolve_model("digits_cnn")
    with kit.create_engine(art) as engine:
        train = model_data("digits_cnn", None, engine, samples=20, split="train")
        test = model_data("digits_cnn", None, engine, samples=20, split="test")
        assert train.describe().startswith("the zoo's train samples for digits_cnn") and len(train.labels) == 20
        assert not any((train.arrays["image"][i] == test.arrays["image"]).all(axis=(1, 2, 3)).any()
                       for i in range(20))
        synthetic = model_data(art.path, None, engine, samples=8)
        assert synthetic.synthetic and "not accuracy" in synthetic.describe()
        np_data = tmp_path / "d.npz"
        import numpy as np
        np.savez(np_data, image=train.arrays["image"][:5], labels=train.labels[:5])
        user = model_data(art.path, str(np_data), engine)
        assert user.describe().startswith("user data d.npz: 5 samples")

"""Real zoo builds (slow): accuracy, determinism, the same names on every format, cache use."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import kit.zoo
from kit.zoo import digits_data, get_model, sample_feeds

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow]

SMALL = {"mobilenet_v2": {"image_size": 32, "alpha": 0.35, "classes": 10},
         "digits_cnn": {"epochs": 2}}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    old = os.environ.get("KIT_CACHE_DIR")
    path = tmp_path_factory.mktemp("zoo_cache")
    os.environ["KIT_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("KIT_CACHE_DIR", None)
    else:
        os.environ["KIT_CACHE_DIR"] = old


def _engine(art):
    from kit.engines import create_engine

    return create_engine(art)


def test_digits_cnn_reaches_95_percent_on_every_format(cache_dir):
    source = get_model("digits_cnn", format="savedmodel")
    assert source.metrics["test_accuracy"] >= 0.95
    data = digits_data()
    for fmt in ("savedmodel", "onnx", "tflite"):
        art = get_model("digits_cnn", format=fmt)
        assert art.lineage()[0].path == source.path
        with _engine(art) as eng:
            assert [s.name for s in eng.input_specs] == ["image"]
            probabilities = eng.predict({"image": data.x_test})["probabilities"]
        accuracy = float(np.mean(probabilities.argmax(axis=1) == data.y_test))
        assert accuracy >= 0.95, (fmt, accuracy)


def test_cli_zoo_reports_accuracy_and_build_time(cache_dir, capsys):
    from kit.cli import main

    get_model("digits_cnn")  # built by the test above when run together
    assert main(["zoo", "digits_cnn"]) == 0
    out = capsys.readouterr().out
    assert "test_accuracy=0.9" in out and re.search(r"built in \d+(\.\d+)? s", out)


@pytest.mark.parametrize("name", ["mobilenet_v2"])
def test_same_names_and_answers_on_every_format(cache_dir, name):
    feeds = sample_feeds(name, batch_size=2, seed=5, **SMALL[name])
    answers = {}
    for fmt in ("savedmodel", "onnx", "tflite"):
        art = get_model(name, format=fmt, **SMALL[name])
        if fmt != "savedmodel":
            assert art.metrics["cosine"] > 0.9999 and art.parent.format == "savedmodel"
        with _engine(art) as eng:
            assert sorted(s.name for s in eng.input_specs) == sorted(feeds)
            answers[fmt] = eng.predict(feeds)
    for fmt in ("onnx", "tflite"):
        assert set(answers[fmt]) == set(answers["savedmodel"])
        for key, value in answers["savedmodel"].items():
            np.testing.assert_allclose(answers[fmt][key], value, atol=1e-4)
    first = next(iter(answers["savedmodel"].values()))
    assert not np.allclose(first[0], first[1]), "different inputs must give different outputs"


def test_a_seed_builds_the_same_model(cache_dir, tmp_path, monkeypatch):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    feeds = sample_feeds("digits_cnn", batch_size=16)
    first = get_model("digits_cnn", format="onnx", **SMALL["digits_cnn"])
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    second = get_model("digits_cnn", format="onnx", **SMALL["digits_cnn"])
    assert first.path != second.path
    with OnnxRuntimeEngine(first) as a, OnnxRuntimeEngine(second) as b:
        np.testing.assert_allclose(a.predict(feeds)["probabilities"], b.predict(feeds)["probabilities"],
                                   rtol=0, atol=1e-6)


def test_cache_hit_does_not_build_and_damage_forces_a_rebuild(cache_dir, monkeypatch):
    art = get_model("digits_cnn", format="tflite", **SMALL["digits_cnn"])

    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(kit.zoo, "_build", no_build)
    again = get_model("digits_cnn", format="tflite", **SMALL["digits_cnn"])
    assert again.path == art.path and again.metrics == art.metrics
    art.path.write_bytes(art.path.read_bytes()[:100])  # a truncated file
    with pytest.raises(AssertionError, match="rebuilt"):
        get_model("digits_cnn", format="tflite", **SMALL["digits_cnn"])

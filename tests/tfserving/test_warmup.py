from __future__ import annotations

import numpy as np
import pytest

from kit.errors import ConfigError, InputError, ModelLoadError
from kit.loading.warmup import first_request_penalty, warm_up, warming
from kit.tfserving.warmup import (
    MAX_WARMUP_RECORDS,
    WARMUP_DIR,
    WARMUP_FILE,
    read_tfserving_warmup,
    signature_inputs,
    write_tfserving_warmup,
)


def test_warm_up_runs_synthetic_requests(mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    with OnnxRuntimeEngine(mlp_onnx) as engine:
        report = warm_up(engine, n=4, batch_size=2)
        assert report["requests"] == 4 and report["seconds"] > 0
        assert warm_up(engine, requests=[])["requests"] == 0
        with pytest.raises(ConfigError):
            warm_up(engine, n=-1)


def test_warming_loader_warms_what_it_loads(mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    seen = []

    class Counting(OnnxRuntimeEngine):
        def predict(self, feeds):
            seen.append(1)
            return super().predict(feeds)

    engine = warming(lambda: Counting(mlp_onnx), n=2)()
    assert len(seen) == 2
    engine.close()


def test_first_request_penalty_rows(mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.specs import synthetic_feeds

    with OnnxRuntimeEngine(mlp_onnx) as probe:
        feeds = synthetic_feeds(probe.input_specs, batch_size=1)
    rows = first_request_penalty(lambda: OnnxRuntimeEngine(mlp_onnx), feeds, warmup_requests=2, repeats=2,
                                 steady_runs=3)
    assert [r["mode"] for r in rows] == ["cold", "warmed"] * 2
    assert all(r["first_request_s"] > 0 and r["steady_s"] > 0 for r in rows)
    assert all(r["warmup_s"] > 0 for r in rows if r["mode"] == "warmed")
    assert all(r["penalty_s"] == pytest.approx(r["first_request_s"] - r["steady_s"]) for r in rows)
    with pytest.raises(ConfigError):
        first_request_penalty(lambda: OnnxRuntimeEngine(mlp_onnx), feeds, repeats=0)


def test_first_request_penalty_warms_up_on_the_given_requests(mlp_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.specs import synthetic_feeds

    with OnnxRuntimeEngine(mlp_onnx) as probe:
        feeds = synthetic_feeds(probe.input_specs, batch_size=1)
    seen = []

    class Counting(OnnxRuntimeEngine):
        def predict(self, request):
            seen.append(request)
            return super().predict(request)

    real = [{k: v + 1.0 for k, v in feeds.items()}]
    first_request_penalty(lambda: Counting(mlp_onnx), feeds, warmup_requests=5, repeats=1, steady_runs=2,
                          warmup_feeds=real)
    warmed = seen[1 + 2:]  # the cold load's first and steady requests come first
    assert warmed[0] is real[0] and sum(r is real[0] for r in seen) == 1  # one warm-up, on the given request


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")

    class Scale(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.int32, name="ids")])
        def serve(self, x, ids):
            return {"y": x * 2.0, "n": ids + 1}

    path = tmp_path_factory.mktemp("savedmodel") / "1"
    module = Scale()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _request(i: int, batch: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.full((batch, 4), i, np.float32), "ids": np.arange(batch, dtype=np.int32)}


@pytest.mark.tensorflow
def test_warmup_file_round_trip(saved_model):
    from tensorflow_serving.apis import predict_pb2

    assert signature_inputs(saved_model) == {"x": (np.dtype(np.float32), (None, 4)),
                                             "ids": (np.dtype(np.int32), (None,))}
    sent = [_request(i, batch=1 + i % 3) for i in range(5)]
    path = write_tfserving_warmup(saved_model, sent, model_name="scale")
    assert path == saved_model / WARMUP_DIR / WARMUP_FILE
    assert not [p for p in path.parent.iterdir() if p.name != WARMUP_FILE]  # no temp files left
    parsed = read_tfserving_warmup(saved_model, run=True)
    assert len(parsed) == 5 and all(isinstance(r, predict_pb2.PredictRequest) for r in parsed)
    import tensorflow as tf

    for request, feeds in zip(parsed, sent):
        assert request.model_spec.name == "scale" and request.model_spec.signature_name == "serving_default"
        for key, value in feeds.items():
            np.testing.assert_array_equal(tf.make_ndarray(request.inputs[key]), value)


@pytest.mark.tensorflow
def test_warmup_file_rejects_bad_requests(saved_model):
    with pytest.raises(ConfigError, match="1000"):
        write_tfserving_warmup(saved_model, [_request(0)] * (MAX_WARMUP_RECORDS + 1))
    with pytest.raises(ConfigError):
        write_tfserving_warmup(saved_model, [])
    with pytest.raises(InputError, match="expects"):
        write_tfserving_warmup(saved_model, [{"x": np.zeros((1, 4), np.float32)}])  # missing ids
    with pytest.raises(InputError, match="dtype"):
        write_tfserving_warmup(saved_model, [{**_request(0), "x": np.zeros((2, 4), np.float64)}])
    with pytest.raises(InputError, match="shape"):
        write_tfserving_warmup(saved_model, [{**_request(0), "x": np.zeros((2, 5), np.float32)}])
    with pytest.raises(ModelLoadError, match="signature"):
        write_tfserving_warmup(saved_model, [_request(0)], signature_name="nope")


@pytest.mark.tensorflow
def test_damaged_or_foreign_warmup_files_are_reported(saved_model, tmp_path):
    import shutil

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    copy = tmp_path / "1"
    shutil.copytree(saved_model, copy)
    path = write_tfserving_warmup(copy, [_request(i) for i in range(3)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(ModelLoadError, match="TFRecord"):
        read_tfserving_warmup(copy)
    with tf.io.TFRecordWriter(str(path)) as writer:  # a classify log is not a predict log
        writer.write(prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog()).SerializeToString())
    with pytest.raises(ModelLoadError, match="predict_log"):
        read_tfserving_warmup(copy)

"""``kit export --target triton``: ``config.pbtxt`` parsed with Triton's own ``inference.ModelConfig``."""

from __future__ import annotations

import numpy as np
import pytest

from kit.export import export, verify

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def _parse(path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_onnx_with_external_data(external_onnx, mlp_onnx, tmp_path):
    from kit.engines.registry import create_engine

    config = {"max_batch_size": 16, "batch_timeout_micros": 300, "allowed_batch_sizes": [4, 16],
              "intra_op_num_threads": 2, "inter_op_num_threads": 1, "graph_optimization_level": "extended",
              "provider": "CUDAExecutionProvider", "instance_count": 2, "warmup_batch_sizes": [1, 16],
              "input_names": ["features"]}
    bundle = export(external_onnx, "triton", "mlp", tmp_path / "repo", config)
    root = bundle.path
    assert sorted(bundle.files) == ["mlp/1/mlp_ext.weights", "mlp/1/model.onnx", "mlp/config.pbtxt"]
    assert verify(root) == []
    m = _parse(root / "mlp" / "config.pbtxt")
    assert (m.name, m.backend, m.max_batch_size) == ("mlp", "onnxruntime", 16)
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in m.input] == \
        [("features", "TYPE_FP32", [16])]
    assert [(o.name, list(o.dims)) for o in m.output] == [("probabilities", [10])]
    assert list(m.dynamic_batching.preferred_batch_size) == [4, 16]
    assert m.dynamic_batching.max_queue_delay_microseconds == 300
    (group,) = m.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert m.parameters["intra_op_thread_count"].string_value == "2"
    assert m.parameters["inter_op_thread_count"].string_value == "1"
    assert m.optimization.graph.level == 1  # the onnxruntime backend's ORT_ENABLE_EXTENDED
    assert [(w.batch_size, list(w.inputs["features"].dims)) for w in m.model_warmup] == [(1, [16]), (16, [16])]
    assert list(m.version_policy.specific.versions) == [1]
    # the copied model loads from the repository (external data found beside it) and answers as the source
    sent = {"features": np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)}
    with create_engine(root / "mlp" / "1" / "model.onnx") as exported, create_engine(mlp_onnx) as source:
        np.testing.assert_array_equal(exported.predict(sent)["probabilities"], source.predict(sent)["probabilities"])


def test_onnx_without_batching_keeps_full_dims(mlp_onnx, tmp_path):
    bundle = export(mlp_onnx, "triton", "mlp", tmp_path / "repo")
    m = _parse(bundle.path / "mlp" / "config.pbtxt")
    assert m.max_batch_size == 0 and list(m.input[0].dims) == [-1, 16]
    assert not m.HasField("dynamic_batching") and not m.HasField("optimization")
    assert m.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert m.model_warmup[0].batch_size == 1 and list(m.model_warmup[0].inputs["features"].dims) == [1, 16]


@pytest.mark.tensorflow
def test_savedmodel(dense_savedmodel, tmp_path):
    bundle = export(dense_savedmodel, "triton", "dense", tmp_path / "repo",
                    {"max_batch_size": 4, "batch_timeout_micros": 100})
    m = _parse(bundle.path / "dense" / "config.pbtxt")
    assert (m.backend, m.platform, m.max_batch_size) == ("tensorflow", "tensorflow_savedmodel", 4)
    assert {i.name: (model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in m.input} == \
        {"x": ("TYPE_FP32", [4]), "ids": ("TYPE_INT32", [])}
    assert {o.name: list(o.dims) for o in m.output} == {"y": [3], "n": []}
    assert (bundle.path / "dense" / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    assert not m.parameters  # the tensorflow backend takes no per-model thread parameters
    assert verify(bundle.path) == []


def test_warmup_from_the_users_data(mlp_onnx, tmp_path):
    rows = np.random.default_rng(3).standard_normal((6, 16)).astype(np.float32)
    data = tmp_path / "inputs.npz"
    np.savez(data, features=rows, labels=np.zeros(6, np.int64))
    bundle = export(mlp_onnx, "triton", "mlp", tmp_path / "repo", {"max_batch_size": 4, "warmup_batch_sizes": [1, 4]},
                    data=data)
    m = _parse(bundle.path / "mlp" / "config.pbtxt")
    files = [w.inputs["features"].input_data_file for w in m.model_warmup]
    assert files == ["features_batch1", "features_batch4"]
    raw = (bundle.path / "mlp" / "warmup" / "features_batch4").read_bytes()
    np.testing.assert_array_equal(np.frombuffer(raw, np.float32).reshape(4, 16), rows[:4])
    assert "mlp/warmup/features_batch4" in bundle.manifest["files"]

"""Models for the export tests: a SavedModel with weights, an external-data ONNX, a fixed-batch ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def dense_savedmodel(tmp_path_factory) -> Path:
    """``y = x @ w + b`` and ``n = ids + 1`` over a ``[None, 4]`` float input and a ``[None]`` int input."""
    tf = pytest.importorskip("tensorflow")

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))
            self.b = tf.Variable(np.arange(3, dtype=np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([None], tf.int32, name="ids")])
        def serve(self, x, ids):
            return {"y": tf.matmul(x, self.w) + self.b, "n": ids + 1}

    path = tmp_path_factory.mktemp("savedmodel") / "dense"
    module = Dense()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="session")
def external_onnx(mlp_onnx, tmp_path_factory) -> Path:
    """The MLP saved with its weights in a separate file (``onnx.save(..., save_as_external_data=True)``)."""
    import onnx

    path = tmp_path_factory.mktemp("external") / "mlp_ext.onnx"
    onnx.save(onnx.load(str(mlp_onnx)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="mlp_ext.weights", size_threshold=0)
    assert (path.parent / "mlp_ext.weights").is_file()
    return path


@pytest.fixture(scope="session")
def fixed_batch_onnx(tmp_path_factory) -> Path:
    """``y = x + 1`` over a fixed ``[1, 4]`` input: no batch dimension to batch on."""
    import onnx
    from onnx import TensorProto, helper

    from kit.testing import ONNX_IR_VERSION, ONNX_OPSET

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    one = onnx.numpy_helper.from_array(np.ones((4,), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "fixed", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    path = tmp_path_factory.mktemp("fixed") / "fixed.onnx"
    onnx.save(model, str(path))
    return path


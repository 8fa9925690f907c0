"""Tiny ONNX models shaped like the ones users bring, for the specs/models/data tests (built with onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.engines.probe import save_graph


def _save(graph, path: Path, **save_kwargs) -> Path:
    return save_graph(graph, path, opset=18, **save_kwargs)


def make_state_model(path: Path) -> Path:
    """A voice-activity-like model: ``input [batch, samples]``, state ``[2, batch, 128]``, int64 scalar ``sr``.

    ``out = mean(input) * sr / 16000 + sum(state)``; ``new_state = state * 0.5``.
    """
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    axes02 = helper.make_tensor("axes02", TensorProto.INT64, [2], [0, 2])
    half = helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])
    base = helper.make_tensor("base", TensorProto.FLOAT, [], [16000.0])
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=0),
             helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["srf", "base"], ["scale"]),
             helper.make_node("Mul", ["m", "scale"], ["ms"]),
             helper.make_node("ReduceSum", ["state", "axes02"], ["ss"], keepdims=0),
             helper.make_node("Add", ["ms", "ss"], ["out"]),
             helper.make_node("Mul", ["state", "half"], ["new_state"])]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", "samples"]),
              helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 128]),
              helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch"]),
               helper.make_tensor_value_info("new_state", TensorProto.FLOAT, [2, "batch", 128])]
    return _save(helper.make_graph(nodes, "state", inputs, outputs, [axes, axes02, half, base]), path)


def make_shared_dim_model(path: Path) -> Path:
    """Two inputs sharing the symbolic dims ``batch`` and ``seq``: ``y = ids(float) * mask``."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["ids"], ["idf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["idf", "mask"], ["y"])]
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"])]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq"])
    return _save(helper.make_graph(nodes, "shared", inputs, [y]), path)


def make_external_data_model(path: Path, width: int = 512) -> Path:
    """``y = x @ w`` with ``w`` (width x width) saved in an external data file beside the model."""
    import onnx
    from onnx import TensorProto, helper

    w = onnx.numpy_helper.from_array(np.full((width, width), 0.01, np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ext", [x], [y], [w])
    return _save(graph, path, save_as_external_data=True, all_tensors_to_one_file=True,
                 location=path.name + ".data", size_threshold=1024)

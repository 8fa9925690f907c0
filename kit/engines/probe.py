"""Tiny ONNX models built in code: the probe that checks an execution provider really runs.

``kit.engines.providers`` opens a session on ``make_add_model`` to see whether a provider
loads and computes; tests, examples and benchmarks use the same models through
``kit.testing``. They live here, beside the engines, so the engines need nothing above them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_IR_VERSION = 10  # ONNX Runtime 1.31 reads IR <= 13; onnx 1.23 writes 14 by default
ONNX_OPSET = 17


def save_graph(graph, path: Path, opset: int = ONNX_OPSET, **save_kwargs) -> Path:
    """``graph`` as a checked model at ``path`` (IR ``ONNX_IR_VERSION``); ``save_kwargs`` go to ``onnx.save``."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), **save_kwargs)
    return path


def make_add_model(path: str | Path, width: int = 64) -> Path:
    """``y = x + 1`` over a ``[batch, width]`` float32 input: the smallest real workload."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    one = onnx.numpy_helper.from_array(np.ones((width,), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add", [x], [y], [one])
    return save_graph(graph, Path(path))


def make_mlp_model(path: str | Path, inputs: int = 16, hidden: int = 32, classes: int = 10,
                   seed: int = 0) -> Path:
    """A two-layer MLP with softmax (``features`` -> ``probabilities``), symbolic batch."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    w1 = onnx.numpy_helper.from_array(rng.standard_normal((inputs, hidden)).astype(np.float32) * 0.3, "w1")
    b1 = onnx.numpy_helper.from_array(np.zeros(hidden, np.float32), "b1")
    w2 = onnx.numpy_helper.from_array(rng.standard_normal((hidden, classes)).astype(np.float32) * 0.3, "w2")
    b2 = onnx.numpy_helper.from_array(np.zeros(classes, np.float32), "b2")
    nodes = [helper.make_node("MatMul", ["features", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["l0"]),
             helper.make_node("Add", ["l0", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", inputs])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])
    return save_graph(helper.make_graph(nodes, "mlp", [x], [y], [w1, b1, w2, b2]), Path(path))

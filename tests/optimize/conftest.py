"""Tiny ONNX models shaped like the ones users bring: built once per session with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _save(graph, path: Path, opset: int = 17) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10 if opset >= 13 else 4
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _init(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(array.astype(np.float32), name)


@pytest.fixture(scope="session")
def conv_onnx(model_dir) -> Path:
    """A small CNN with an odd input name (``gpu_0/data_0``) and a symbolic batch: Conv-Relu-Pool-Gemm."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    inits = [_init("w_conv", rng.standard_normal((8, 1, 3, 3)) * 0.5), _init("b_conv", np.zeros(8)),
             _init("w_fc", rng.standard_normal((8, 10)) * 0.5), _init("b_fc", np.zeros(10))]
    nodes = [helper.make_node("Conv", ["gpu_0/data_0", "w_conv", "b_conv"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w_fc", "b_fc"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["gpu_0/softmax_1"], name="softmax", axis=-1)]
    x = helper.make_tensor_value_info("gpu_0/data_0", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("gpu_0/softmax_1", TensorProto.FLOAT, ["N", 10])
    return _save(helper.make_graph(nodes, "cnn", [x], [y], inits), model_dir / "conv.onnx")


def _mlp_with_initializer_inputs(name: str, seed: int):
    """x[batch, 16] -> MatMul-Relu-MatMul -> y[batch, 4], every initializer also listed as a graph input."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    inits = [_init("w1", rng.standard_normal((16, 32)) * 0.3), _init("w2", rng.standard_normal((32, 4)) * 0.3)]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "w2"], ["y"], name="mm2")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
              helper.make_tensor_value_info("w1", TensorProto.FLOAT, [16, 32]),
              helper.make_tensor_value_info("w2", TensorProto.FLOAT, [32, 4])]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    return helper.make_graph(nodes, name, inputs, [y], inits)


@pytest.fixture(scope="session")
def old_opset_onnx(model_dir) -> Path:
    """Opset 9, IR 4, with every initializer also listed as a graph input (old exporters did that)."""
    return _save(_mlp_with_initializer_inputs("old", seed=1), model_dir / "old_opset.onnx", opset=9)


@pytest.fixture(scope="session")
def multi_io_onnx(model_dir) -> Path:
    """Two inputs (symbolic batch and sequence), two outputs."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(2)
    inits = [_init("wa", rng.standard_normal((16, 16)) * 0.3), _init("wb", rng.standard_normal((16, 16)) * 0.3)]
    nodes = [helper.make_node("MatMul", ["tokens", "wa"], ["ta"], name="mm_a"),
             helper.make_node("MatMul", ["context", "wb"], ["cb"], name="mm_b"),
             helper.make_node("Unsqueeze", ["cb", "axis1"], ["cb3"], name="unsq"),
             helper.make_node("Add", ["ta", "cb3"], ["hidden"], name="add"),
             helper.make_node("ReduceMean", ["hidden", "axis1"], ["pooled"], name="mean", keepdims=0)]
    inits.append(helper.make_tensor("axis1", TensorProto.INT64, [1], [1]))
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "seq", 16]),
              helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", 16])]
    outputs = [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", 16]),
               helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 16])]
    return _save(helper.make_graph(nodes, "multi", inputs, outputs, inits), model_dir / "multi_io.onnx", opset=18)


@pytest.fixture(scope="session")
def runtime_weight_onnx(model_dir) -> Path:
    """A MatMul whose weight is computed at run time by ConstantOfShape (+ Mul by a scale)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ConstantOfShape", ["wshape"], ["w0"], name="fill",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.05])),
             helper.make_node("Mul", ["w0", "scale"], ["w"], name="scale_w"),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    inits = [helper.make_tensor("wshape", TensorProto.INT64, [2], [16, 8]),
             _init("scale", np.linspace(0.5, 1.5, 8))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    return _save(helper.make_graph(nodes, "cos", [x], [y], inits), model_dir / "runtime_weight.onnx")


# ---------------------------------------------------------------- models from other exporters (issue 13)

@pytest.fixture(scope="session")
def ir3_onnx(model_dir) -> Path:
    """IR 3 / opset 8: every initializer is also a graph input, as the spec then required."""
    import onnx
    from onnx import helper

    model = helper.make_model(_mlp_with_initializer_inputs("ir3", seed=3), opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    path = model_dir / "ir3.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def constant_weight_onnx(model_dir) -> Path:
    """Conv and MatMul weights held by ``Constant`` nodes, not initializers (Paddle-style exports)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)

    def const(name, array):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array.astype(np.float32), name))

    nodes = [const("wc", rng.standard_normal((4, 3, 3, 3)) * 0.3), const("bc", np.zeros(4)),
             const("wf", rng.standard_normal((4, 5)) * 0.3),
             helper.make_node("Conv", ["image", "wc", "bc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc")]
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    return _save(helper.make_graph(nodes, "constw", [x], [y]), model_dir / "constant_weight.onnx")


@pytest.fixture(scope="session")
def cast_heavy_onnx(model_dir) -> Path:
    """Unnamed nodes and ``Cast(to=FLOAT)`` nodes, which a plain float16 conversion leaves mistyped."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(5)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Cast", ["m"], ["mc"], to=TensorProto.FLOAT),
             helper.make_node("Relu", ["mc"], ["r"]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMax", ["sf"], ["n"], keepdims=1),
             helper.make_node("Div", ["r", "n"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    return _save(helper.make_graph(nodes, "casts", [x], [y], [_init("w", rng.standard_normal((8, 8)))]),
                 model_dir / "cast_heavy.onnx")


@pytest.fixture(scope="session")
def if_onnx(model_dir) -> Path:
    """An ``If`` whose branches read a main-graph input (``bias``) and initializer (``w``) nothing else reads."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(6)
    out = helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, ["batch", 4])
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["xw"], name="then_mm"),
                              helper.make_node("Add", ["xw", "bias"], ["branch_out"], name="then_add")],
                             "then", [], [out])
    other = helper.make_graph([helper.make_node("Sub", ["x", "bias"], ["branch_out"], name="else_sub")],
                              "else", [], [out])
    nodes = [helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=then, else_branch=other)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
              helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
              helper.make_tensor_value_info("bias", TensorProto.FLOAT, [4])]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    return _save(helper.make_graph(nodes, "if", inputs, [y], [_init("w", rng.standard_normal((4, 4)))]),
                 model_dir / "if.onnx")

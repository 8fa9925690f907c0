"""Tiny models built in code, and a thread runner, for tests, examples and benchmarks that need no zoo build."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ONNX_IR_VERSION = 10  # ONNX Runtime 1.31 reads IR <= 13; onnx 1.23 writes 14 by default
ONNX_OPSET = 17


def _save(graph, path: Path, opset: int = ONNX_OPSET) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def make_add_model(path: str | Path, width: int = 64) -> Path:
    """``y = x + 1`` over a ``[batch, width]`` float32 input: the smallest real workload."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    one = onnx.numpy_helper.from_array(np.ones((width,), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add", [x], [y], [one])
    return _save(graph, Path(path))


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
    return _save(helper.make_graph(nodes, "mlp", [x], [y], [w1, b1, w2, b2]), Path(path))


def gpu_provider_loads() -> bool:
    """Whether a CUDA session really runs on CUDA here (listing it proves nothing)."""
    import tempfile

    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.errors import KitError

    with tempfile.TemporaryDirectory() as tmp:
        path = make_add_model(Path(tmp) / "probe.onnx")
        try:
            OnnxRuntimeEngine(path, providers=("CUDAExecutionProvider",)).close()
        except KitError:
            return False
    return True


def run_threads(worker: Callable[[int], Any], count: int, timeout_s: float = 60.0) -> list[Any]:
    """Run ``worker(0) .. worker(count - 1)`` on threads released together; their results in order.

    An exception in any thread is re-raised here (a failed assert in a thread would
    otherwise only print), and a thread still running after ``timeout_s`` fails the caller.
    """
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = worker(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"run-threads-{i}", daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    if errors:
        raise errors[0]
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise AssertionError(f"{len(stuck)} thread(s) still running after {timeout_s} s: {stuck}")
    return results

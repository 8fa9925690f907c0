"""Where the memory goes: each model measured alone in a child process, MB above that child's baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.engines.probe import save_graph
from kit.errors import InputError, KitError, ModelLoadError
from kit.profile import measure_memory, memory_frame
from kit.profile.memory import _error_from
from kit.testing import make_add_model

WIDTH = 5200  # 5200 x 5200 float32 = 108 MB (103 MiB) of weights


def _big_matmul(path, width=WIDTH):
    """``y = x @ w`` with ``w`` a width x width float32 initializer (>= 100 MiB at the default width)."""
    import onnx
    from onnx import TensorProto, helper

    w = onnx.numpy_helper.from_array(np.full((width, width), 0.001, np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])], [w])
    return save_graph(graph, path)


@pytest.mark.slow  # two child processes and a 108 MB model file
def test_a_model_with_100_mb_of_weights_costs_at_least_100_mb_and_a_tiny_one_far_less(tmp_path):
    big = measure_memory(_big_matmul(tmp_path / "big.onnx"), {"x": np.ones((1, WIDTH), np.float32)}, requests=3)
    tiny = measure_memory(make_add_model(tmp_path / "add.onnx"), {"x": np.ones((1, 64), np.float32)}, requests=3)
    assert WIDTH * WIDTH * 4 / 2**20 >= 100
    print(f"peak above baseline: {big.peak_mb:.1f} MB with 108 MB of weights, {tiny.peak_mb:.1f} MB tiny")  # pytest -s
    assert big.peak_mb >= 100, big
    assert big.steady_mb >= 100 and big.load_mb >= 100  # the weights stay resident
    assert tiny.peak_mb < 50 and big.peak_mb - tiny.peak_mb >= 90, (big, tiny)
    for result in (big, tiny):
        assert result.peak_mb >= max(result.load_mb, result.first_mb, result.steady_mb)
        assert result.baseline_mb > 0 and result.load_s > 0 and result.first_s > 0 and result.requests == 3
        assert result.peak_source == "VmHWM"


def test_errors_in_the_child_come_back_as_kit_errors(tmp_path):
    model = make_add_model(tmp_path / "add.onnx")
    with pytest.raises(InputError, match="expects x"):
        measure_memory(model, {"wrong": np.ones((1, 64), np.float32)}, requests=1)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    frame = memory_frame([model, broken], {"x": np.ones((1, 64), np.float32)}, requests=1)
    assert list(frame["name"]) == ["add", "broken"]  # a failure is a row saying why; the others go on
    assert math.isfinite(frame.loc[0, "peak_mb"]) and "could not load" in frame.loc[1, "failure"]
    assert isinstance(_error_from({"type": "ModelLoadError", "message": "could not load"}), ModelLoadError)


def test_a_non_kit_error_is_a_kit_error_naming_its_type():
    error = _error_from({"type": "MemoryError", "message": "out of memory"})
    assert type(error) is KitError and str(error) == "MemoryError: out of memory"
    assert type(_error_from({"type": "MissingDependencyError", "message": "pip install x"})) is KitError

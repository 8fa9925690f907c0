"""Where the time goes: ONNX Runtime's profile parsed by op type and node, variants side by side."""

from __future__ import annotations

import numpy as np
import pytest

from kit.engines.probe import save_graph
from kit.errors import ConfigError
from kit.profile import compare_op_profiles, op_profile, op_profile_summary, parse_ort_profile


def _conv_relu_matmul(path):
    """x[batch, 3, 8, 8] -> Conv(4 filters) -> Relu -> Flatten -> MatMul(256 x 10)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    m = onnx.numpy_helper.from_array(rng.standard_normal((4 * 8 * 8, 10)).astype(np.float32), "m")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "m"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "crm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], [w, m])
    return save_graph(graph, path)


def test_profile_of_a_known_model_has_its_op_types_and_shares(tmp_path, monkeypatch):
    model = _conv_relu_matmul(tmp_path / "crm.onnx")
    monkeypatch.chdir(tmp_path)  # a profile left behind would land here
    feeds = {"x": np.ones((2, 3, 8, 8), np.float32)}
    profile = op_profile(model, feeds, requests=3, warmup=1, graph_optimization_level="disable")
    by_op = profile.to_frame()
    assert set(by_op.index) == {"Conv", "Relu", "Flatten", "MatMul"}
    assert by_op["share_pct"].sum() == pytest.approx(100.0)
    assert (by_op["count"] == 1).all() and set(by_op["provider"]) == {"CPU"}
    assert set(by_op["precision"]) == {"float32"}
    assert profile.requests == 3 and (profile.nodes["calls"] == 3).all()  # the warm-up run is left out
    assert profile.total_ms == pytest.approx(by_op["ms"].sum()) and profile.total_ms > 0
    assert list(profile.slowest(2)["node"]) == list(profile.nodes.sort_values("ms", ascending=False)["node"][:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.onnx"]  # the profile file was removed


def _event(name, op, ts, dur, types=("float",), cat="Node", provider="CPUExecutionProvider", output=None):
    shapes = [{t: [1, 4]} for t in types]
    return {"cat": cat, "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "ph": "X",
            "args": {"op_name": op, "provider": provider, "input_type_shape": shapes,
                     "output_type_shape": [{output: [2]}] if output else shapes[-1:]}}


def _run(ts, dur=100):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur, "ph": "X", "args": {}}


def test_parsing_leaves_out_warmup_and_takes_each_nodes_median_over_the_measured_runs():
    events = [_run(0), _event("conv", "Conv", 1, 500), _event("relu", "Relu", 600, 50),  # warm-up run
              _run(1000), _event("conv", "Conv", 1001, 300), _event("relu", "Relu", 1400, 100),
              _run(2000), _event("conv", "Conv", 2001, 100), _event("relu", "Relu", 2200, 100),
              _run(3000), _event("conv", "Conv", 3001, 9000),  # a preempted request; relu did not run
              {"cat": "Session", "name": "SequentialExecutor::Execute", "ts": 2000, "dur": 1}]
    profile = parse_ort_profile(events, warmup=1, name="m")
    by_op = profile.to_frame()
    assert profile.requests == 3
    assert by_op.loc["Conv", "ms"] == pytest.approx(0.3) and by_op.loc["Relu", "ms"] == pytest.approx(0.1)
    nodes = profile.nodes.set_index("node")
    assert nodes.loc["conv", "mean_ms"] == pytest.approx(9.4 / 3) and nodes.loc["relu", "calls"] == 2
    assert by_op.loc["Conv", "share_pct"] == pytest.approx(75.0)
    assert list(by_op.index) == ["Conv", "Relu"]  # slowest first


def _profiles():
    fp32 = parse_ort_profile([_run(0), _event("conv", "Conv", 1, 800), _event("sm", "Softmax", 900, 100),
                              _event("shape", "Shape", 1000, 1, output="int64")], name="fp32")
    int8 = parse_ort_profile([_run(0), _event("q", "QuantizeLinear", 1, 50, ("float", "uint8")),
                              _event("conv", "QLinearConv", 60, 200, ("uint8", "int8")),
                              _event("dq", "DequantizeLinear", 300, 40, ("uint8", "float")),
                              _event("sm", "Softmax", 400, 110), _event("shape", "Shape", 600, 1, output="int64")],
                             name="int8")
    return fp32, int8


def test_compare_puts_op_types_side_by_side_and_the_summary_says_what_changed():
    fp32, int8 = _profiles()
    frame = compare_op_profiles({"fp32": fp32, "int8": int8})
    assert frame.loc["Conv", "ms[fp32]"] == pytest.approx(0.8) and frame.loc["Conv", "ms[int8]"] == 0
    assert frame.loc["QLinearConv", "delta_ms"] == pytest.approx(0.2)
    assert frame.loc["QLinearConv", "precision[int8]"] == "int8"
    assert frame.loc["QuantizeLinear", "precision[int8]"] == "float32+int8"
    assert frame.loc["Shape", "precision[int8]"] == ""  # computes no numbers: never "stayed float"
    assert frame.attrs["total_ms"] == {"fp32": pytest.approx(0.901), "int8": pytest.approx(0.401)}
    assert [n["node"] for n in frame.attrs["nodes"]["int8"]] == ["conv", "sm", "q", "dq", "shape"]  # slowest first
    sentence = op_profile_summary(frame)
    assert sentence.startswith("int8 is 2.25x faster than fp32")
    assert "Conv (0.8 ms in fp32) gave way to QLinearConv, QuantizeLinear, DequantizeLinear (0.29 ms)" in sentence
    assert "Softmax went from 0.1 to 0.11 ms" in sentence
    assert sentence.endswith("these ops stayed float: Softmax (0.11 ms).")


def test_summary_of_a_float_only_change_names_no_float_ops():
    fp32, _ = _profiles()
    fused = parse_ort_profile([_run(0), _event("c", "FusedConv", 1, 400), _event("sm", "Softmax", 500, 100)])
    sentence = op_profile_summary(compare_op_profiles({"original": fp32, "ort-all": fused}))
    assert "Conv, Shape (0.801 ms in original) gave way to FusedConv (0.4 ms)" in sentence
    assert "stayed float" not in sentence


def test_only_onnx_models_are_profiled(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"TFL3")
    with pytest.raises(ConfigError, match="LiteRT"):
        op_profile(model, {})
    with pytest.raises(ConfigError, match="at least two"):
        compare_op_profiles({"one": _profiles()[0]})

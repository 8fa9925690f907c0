"""Accuracy-aware dynamic int8 (kit.optimize.fallback): the noisiest MatMul kept in float, the target held."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, QuantizationError
from kit.optimize.fallback import candidate_nodes, quantization_noise, quantize_dynamic_within, simulated_int8_error
from kit.optimize.quality import compare


def _two_matmuls(path, outlier: float = 300.0, named: bool = True) -> ModelArtifact:
    """x[batch, 16] -> quiet = x @ w1 -> Relu -> * gain -> loud = h @ w2 -> y[batch, 8].

    ``gain`` (a float Mul, not quantized) makes channel 0 ``outlier`` times larger, so ``loud`` sees
    one huge activation channel: per-tensor uint8 of its input crushes the others (as GELU outliers
    do to MiniLM's FFN output), while ``quiet``'s input and weights are plain."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 32)).astype(np.float32)
    gain = np.ones(32, np.float32)
    gain[0] = outlier
    w2 = rng.normal(size=(32, 8)).astype(np.float32)
    w2[0] /= outlier  # the outlier channel contributes like the others to y
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="quiet"),
         helper.make_node("Relu", ["h0"], ["h1"], name="relu"),
         helper.make_node("Mul", ["h1", "gain"], ["h"], name="gain"),
         helper.make_node("MatMul", ["h", "w2"], ["y"], name="loud")], "two",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(gain, "gain"),
         numpy_helper.from_array(w2, "w2")])
    if not named:  # as many exporters leave them: kit.optimize.normalize names them before quantizing
        for node in graph.node:
            node.name = ""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return ModelArtifact.from_path(path, name="two")


def _data(n: int = 64) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).normal(size=(n, 16)).astype(np.float32)}


def test_candidates_are_matmuls_with_a_constant_weight(tmp_path):
    model = onnx.load(str(_two_matmuls(tmp_path / "m.onnx").path))
    nodes = candidate_nodes(model)
    assert list(nodes) == ["quiet", "loud"]
    assert nodes["loud"][0] == "h" and nodes["loud"][1].shape == (32, 8)


@pytest.mark.parametrize("per_channel", [False, True])
def test_the_simulated_noise_is_what_onnx_runtime_does(tmp_path, per_channel):
    """The ranking rests on the simulation: it must match ONNX Runtime's own dynamic int8 of one MatMul."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(2)
    w = rng.normal(size=(16, 12)).astype(np.float32) * np.linspace(0.1, 3, 12, dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 12])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "f.onnx"))
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8,
                     per_channel=per_channel)
    import onnxruntime as ort

    x = rng.normal(size=(256, 16)).astype(np.float32) + 0.3
    got = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    exact = x.astype(np.float64) @ w
    measured = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert simulated_int8_error(x, w, per_channel) == pytest.approx(measured, rel=0.15)


def test_the_noisiest_node_is_kept_in_float_and_the_target_holds(tmp_path):
    source = _two_matmuls(tmp_path / "m.onnx")
    search, judge = _data(), {"x": np.random.default_rng(5).normal(size=(64, 16)).astype(np.float32)}
    noise = quantization_noise(source, search)
    assert list(noise) == ["loud", "quiet"] and noise["loud"] > 10 * noise["quiet"]
    result = quantize_dynamic_within(source, search, min_cosine=0.999, out=tmp_path / "q.onnx")
    record = result.params["fallback"]
    assert record["kept_float"] == ["loud"] and result.name.endswith("-keep1nodes") and record["outputs"] == ["y"]
    assert record["steps"][0]["kept_float"] == 0 and record["steps"][0]["min_cosine"] < 0.999  # all int8 fell short
    assert result.metrics["search_min_cosine"] >= 0.999 and (tmp_path / "q.onnx").is_file()
    import onnxruntime as ort

    def run(path):
        return {"y": ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, judge)[0]}
    assert compare(run(source.path), run(result.path)).summary()["min_cosine"] >= 0.999  # on other data too


def test_a_model_that_already_holds_the_target_keeps_nothing_float(tmp_path):
    result = quantize_dynamic_within(_two_matmuls(tmp_path / "m.onnx", outlier=1.0), _data(), min_cosine=0.99,
                                     out=tmp_path / "q.onnx")
    assert result.params["fallback"]["kept_float"] == [] and len(result.params["fallback"]["steps"]) == 1


def test_an_unreachable_target_is_a_clear_error_and_leaves_no_file(tmp_path):
    with pytest.raises(QuantizationError, match="even with all but one of its 2 MatMul/Gemm in float"):
        quantize_dynamic_within(_two_matmuls(tmp_path / "m.onnx"), _data(), min_cosine=1.0, out=tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("data, padding_mask, message", [
    ("not data", None, "data must be"),
    ({"x": np.zeros((2, 16), np.float32)}, None, r"outputs \['z'\] are not outputs of the model"),
    ({"x": np.zeros((2, 16), np.float32)}, {"attention_mask": ["y"]}, "padding_mask names input"),
])
def test_bad_input_is_a_config_error(tmp_path, data, padding_mask, message):
    with pytest.raises(ConfigError, match=message):
        quantize_dynamic_within(_two_matmuls(tmp_path / "m.onnx"), data, padding_mask=padding_mask,
                                outputs=["z"] if "'z'" in message else None)
    with pytest.raises(ConfigError, match="min_cosine"):
        quantize_dynamic_within(_two_matmuls(tmp_path / "m.onnx"), _data(), min_cosine=2.0)


def test_unnamed_nodes_are_ranked_by_the_names_the_quantizer_gives_them(tmp_path):
    result = quantize_dynamic_within(_two_matmuls(tmp_path / "m.onnx", named=False), _data(), min_cosine=0.999,
                                     out=tmp_path / "q.onnx")
    kept = result.params["fallback"]["kept_float"]
    assert len(kept) == 1 and kept[0] in result.params["fallback"]["noise"]
    assert result.metrics["search_min_cosine"] >= 0.999

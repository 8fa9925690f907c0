"""ONNX Runtime's transformer optimizer as a variant: fusions on a tiny BERT layer, agreement, lineage, diff."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, ModelLoadError
from kit.optimize.transformers import (
    TransformerOptConfig,
    attention_shape,
    fused_operators,
    fusion_diff,
    optimize_transformer,
)

HIDDEN, HEADS, FFN = 32, 2, 64


def _bert_layer(path: Path) -> Path:
    """One BERT encoder layer as PyTorch exports it (LayerNorm written out, erf GELU, -10000 mask)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def layer_norm(x, tag):
        mean = node("ReduceMean", [x], f"{tag}_mean", axes=[-1])
        d = node("Sub", [x, mean], f"{tag}_d")
        var = node("ReduceMean", [node("Pow", [d, const(f"{tag}_two", np.float32(2))], f"{tag}_sq")], f"{tag}_var",
                   axes=[-1])
        std = node("Sqrt", [node("Add", [var, const(f"{tag}_eps", np.float32(1e-12))], f"{tag}_ve")], f"{tag}_std")
        scaled = node("Mul", [node("Div", [d, std], f"{tag}_n"), const(f"{tag}_g", np.ones(HIDDEN, np.float32))],
                      f"{tag}_s")
        return node("Add", [scaled, const(f"{tag}_b", np.zeros(HIDDEN, np.float32))], f"{tag}_out")

    def linear(x, n_in, n_out, tag):
        w = const(f"{tag}_w", (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32))
        b = const(f"{tag}_bias", (rng.standard_normal(n_out) * 0.1).astype(np.float32))
        return node("Add", [node("MatMul", [x, w], f"{tag}_mm"), b], f"{tag}_out")

    x = layer_norm("x", "ln0")
    heads_shape = const("heads_shape", np.array([0, 0, HEADS, HIDDEN // HEADS], np.int64))
    q, k, v = (node("Reshape", [linear(x, HIDDEN, HIDDEN, t), heads_shape], f"{t}_r") for t in ("q", "k", "v"))
    q = node("Transpose", [q], "q_t", perm=[0, 2, 1, 3])
    k = node("Transpose", [k], "k_t", perm=[0, 2, 3, 1])
    v = node("Transpose", [v], "v_t", perm=[0, 2, 1, 3])
    scores = node("Div", [node("MatMul", [q, k], "qk"), const("scale", np.float32(np.sqrt(HIDDEN // HEADS)))],
                  "qk_scaled")
    mask = node("Unsqueeze", [node("Unsqueeze", ["attention_mask", const("ax1", np.array([1], np.int64))], "m1"),
                              const("ax2", np.array([2], np.int64))], "m2")
    mask = node("Cast", [mask], "m_f", to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("one", np.float32(1)), mask], "m_inv"), const("big", np.float32(-10000))],
                "m_bias")
    probs = node("Softmax", [node("Add", [scores, bias], "qk_masked")], "probs", axis=-1)
    context = node("Transpose", [node("MatMul", [probs, v], "ctx")], "ctx_t", perm=[0, 2, 1, 3])
    context = node("Reshape", [context, const("hidden_shape", np.array([0, 0, HIDDEN], np.int64))], "ctx_r")
    x = layer_norm(node("Add", [x, linear(context, HIDDEN, HIDDEN, "o")], "res1"), "ln1")
    h = linear(x, HIDDEN, FFN, "ffn1")
    erf = node("Erf", [node("Div", [h, const("sqrt2", np.float32(np.sqrt(2)))], "g_div")], "g_erf")
    gelu = node("Mul", [node("Mul", [h, node("Add", [erf, const("g_one", np.float32(1))], "g_add")], "g_mul"),
                        const("half", np.float32(0.5))], "gelu")
    out = layer_norm(node("Add", [x, linear(gelu, FFN, HIDDEN, "ffn2")], "res2"), "ln2")
    nodes.append(helper.make_node("Identity", [out], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        nodes, "bert_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", HIDDEN]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "seq"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def bert_layer(tmp_path_factory) -> ModelArtifact:
    return ModelArtifact(_bert_layer(tmp_path_factory.mktemp("bert") / "layer.onnx"), "onnx", name="layer")


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.ones((3, 7), np.int32)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return {"x": rng.standard_normal((3, 7, HIDDEN)).astype(np.float32), "attention_mask": mask}


def test_the_fused_variant_agrees_with_its_parent_and_records_its_fusions(bert_layer, tmp_path):
    fused = optimize_transformer(bert_layer, num_heads=HEADS, hidden_size=HIDDEN, feeds=_feeds(),
                                 out=tmp_path / "fused.onnx")
    assert fused.parent is bert_layer and fused.transform == "optimize_transformer"
    assert fused.name == "layer-fused" and fused.path == tmp_path / "fused.onnx"
    ops = fused.params["fused_operators"]
    assert ops.get("Attention") == 1 and ops.get("SkipLayerNormalization", 0) >= 1
    assert ops.get("Gelu", 0) + ops.get("BiasGelu", 0) == 1
    assert fused_operators(fused).get("Attention") == 1 and fused_operators(bert_layer) == {}
    assert fused.metrics["cosine_vs_parent"] >= 0.9999
    assert fused.metrics["max_abs_diff_vs_parent"] < 1e-3
    diff = fusion_diff(bert_layer, fused)
    row = diff.set_index("op_type")
    assert row.loc["Attention", "before"] == 0 and row.loc["Attention", "after"] == 1
    assert row.loc["Attention", "fused_op"]
    assert row.loc["Softmax", "after"] == 0 and row.loc["TOTAL", "after"] < row.loc["TOTAL", "before"]


def test_default_feeds_and_disabled_fusions(bert_layer, tmp_path):
    fused = optimize_transformer(bert_layer, num_heads=HEADS, hidden_size=HIDDEN, disable=("attention",),
                                 opt_level=0, out=tmp_path / "no_attention.onnx")
    assert "Attention" not in fused.params["fused_operators"]
    assert fused.params["disable"] == ["attention"] and fused.metrics["cosine_vs_parent"] >= 0.9999


def test_config_is_checked():
    with pytest.raises(ConfigError, match="model_type"):
        TransformerOptConfig(model_type="gpt9")
    with pytest.raises(ConfigError, match="divisible"):
        TransformerOptConfig(num_heads=5, hidden_size=32)
    with pytest.raises(ConfigError, match="unknown fusion"):
        TransformerOptConfig(disable=("attenshun",))
    with pytest.raises(ConfigError, match="opt_level"):
        TransformerOptConfig(opt_level=3)


def test_a_non_onnx_artifact_is_refused(tmp_path):
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="takes ONNX"):
        optimize_transformer(ModelArtifact(tmp_path / "m.tflite", "tflite"))


def test_the_fused_variant_can_be_quantized(bert_layer, tmp_path):
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.optimize.quantize_onnx import quantize_dynamic

    fused = optimize_transformer(bert_layer, num_heads=HEADS, hidden_size=HIDDEN, feeds=_feeds(),
                                 out=tmp_path / "fused.onnx")
    assert fused.params["types_kept"] > 0  # the quantizer needs the types of the MatMuls that stay
    int8 = quantize_dynamic(fused, out=tmp_path / "fused.int8.onnx", preprocess=False)
    assert int8.parent is fused and fused_operators(int8).get("SkipLayerNormalization", 0) >= 1
    with OnnxRuntimeEngine(fused) as a, OnnxRuntimeEngine(int8) as b:
        want, got = a.predict(_feeds())["last_hidden_state"], b.predict(_feeds())["last_hidden_state"]
    cosine = float(np.sum(want * got) / (np.linalg.norm(want) * np.linalg.norm(got)))
    assert np.all(np.isfinite(got)) and cosine > 0.98


def test_attention_shape_reads_heads_and_hidden_from_one_run(bert_layer, tmp_path):
    from onnx import TensorProto, helper, save

    assert attention_shape(bert_layer, _feeds()) == (HEADS, HIDDEN)
    # a classifier's final Softmax feeds no MatMul: no attention, no hints
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"]),
                               helper.make_node("Softmax", ["logits"], ["p"])], "cnn_head",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [0.1] * 12)])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "head.onnx"))
    head = ModelArtifact(tmp_path / "head.onnx", "onnx", name="head")
    assert attention_shape(head, {"x": np.ones((2, 4), np.float32)}) is None


def test_feeds_the_parent_refuses_are_named_not_the_fusions(bert_layer, tmp_path):
    feeds = {**_feeds(), "x": np.zeros((3, 7, HIDDEN + 1), np.float32)}  # hidden size off by one
    with pytest.raises(ModelLoadError, match=r"^the model to optimize does not run on the check's feeds .*pass "
                                             r"feeds= that it takes"):
        optimize_transformer(bert_layer, num_heads=HEADS, hidden_size=HIDDEN, feeds=feeds, out=tmp_path / "f.onnx")
    assert not (tmp_path / "f.onnx").exists()

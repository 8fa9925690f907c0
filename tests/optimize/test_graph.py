"""Graph optimization: pass-list validation, ORT offline levels on disk, op-type diffs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kit.artifacts import ModelArtifact
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import ConfigError, ModelLoadError
from kit.optimize.graph import (
    ORT_LEVELS,
    PassConfig,
    apply_passes,
    available_passes,
    graph_diff,
    graph_summary,
    op_histogram,
    ort_optimize,
)
from kit.specs import synthetic_feeds


def test_unknown_pass_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown onnxoptimizer pass.*'fuse_bn_into_conv'") as info:
        PassConfig(passes=("fuse_bn_into_conv", "fuse_everything"))
    assert "fuse_everything" in str(info.value)


def test_duplicate_passes_are_dropped_in_order():
    config = PassConfig(passes=["eliminate_identity", "fuse_bn_into_conv", "eliminate_identity"])
    assert config.passes == ("eliminate_identity", "fuse_bn_into_conv")
    assert set(config.passes) <= set(available_passes())


def test_empty_pass_list_is_an_error():
    with pytest.raises(ConfigError, match="at least one"):
        PassConfig(passes=())


@pytest.fixture(scope="module")
def identity_chain(tmp_path_factory):
    """x -> Identity -> Identity -> MatMul -> Add: identities to remove, MatMul+Add to fuse into Gemm."""
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    b = onnx.numpy_helper.from_array(np.ones(4, np.float32), "b")
    nodes = [helper.make_node("Identity", ["x"], ["i1"]), helper.make_node("Identity", ["i1"], ["i2"]),
             helper.make_node("MatMul", ["i2", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path_factory.mktemp("graph") / "chain.onnx"
    onnx.save(model, str(path))
    return path


def test_passes_change_the_graph_and_keep_the_outputs(identity_chain, tmp_path):
    source = ModelArtifact.from_path(identity_chain)
    art = apply_passes(source, passes=("eliminate_identity", "fuse_matmul_add_bias_into_gemm", "eliminate_deadend"),
                       out=tmp_path / "opt.onnx")
    assert art.parent is source and art.transform == "onnxoptimizer"
    assert op_histogram(art) == {"Gemm": 1}
    assert art.metrics["max_abs_diff_vs_parent"] < 1e-5
    diff = graph_diff(source, art).set_index("op_type")
    assert diff.loc["Identity", "change"] == -2 and diff.loc["Gemm", "change"] == 1
    assert diff.loc["TOTAL", "before"] == 4 and diff.loc["TOTAL", "after"] == 1


@pytest.mark.parametrize("level", ORT_LEVELS)
def test_ort_levels_are_written_to_disk_and_run(conv_onnx, tmp_path, level):
    source = ModelArtifact.from_path(conv_onnx)
    art = ort_optimize(source, level, out=tmp_path / f"{level}.onnx")
    assert art.path.exists() and art.params["level"] == level
    assert art.params["hardware_specific"] == (level in ("layout", "all"))
    assert ("cpu" in art.params) == art.params["hardware_specific"]
    with OnnxRuntimeEngine(art) as engine:
        out = engine.predict(synthetic_feeds(engine.input_specs, batch_size=2))["gpu_0/softmax_1"]
    assert out.shape == (2, 10) and art.metrics["max_abs_diff_vs_parent"] < 1e-4


def test_extended_level_fuses_conv_and_relu(conv_onnx, tmp_path):
    art = ort_optimize(ModelArtifact.from_path(conv_onnx), "extended", out=tmp_path / "e.onnx")
    assert "FusedConv" in op_histogram(art) and "Relu" not in op_histogram(art)


def test_basic_level_folds_runtime_weights(runtime_weight_onnx, tmp_path):
    art = ort_optimize(ModelArtifact.from_path(runtime_weight_onnx), "basic", out=tmp_path / "b.onnx")
    assert "ConstantOfShape" not in op_histogram(art)


def test_old_opset_model_with_initializer_inputs_is_optimized(old_opset_onnx, tmp_path):
    art = ort_optimize(ModelArtifact.from_path(old_opset_onnx), "extended", out=tmp_path / "o.onnx")
    with OnnxRuntimeEngine(art) as engine:
        assert engine.predict({"x": np.ones((3, 16), np.float32)})["y"].shape == (3, 4)


def test_bad_level_and_non_onnx_input(conv_onnx, tmp_path):
    with pytest.raises(ConfigError, match="level must be one of"):
        ort_optimize(ModelArtifact.from_path(conv_onnx), "max")
    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="takes an ONNX model"):
        apply_passes(ModelArtifact.from_path(fake))


def test_graph_summary_has_a_row_per_artifact(conv_onnx, tmp_path):
    source = ModelArtifact.from_path(conv_onnx)
    art = ort_optimize(source, "extended", out=tmp_path / "e.onnx")
    frame = graph_summary([source, art])
    assert list(frame["name"]) == [source.name, art.name] and frame["nodes"].iloc[1] < frame["nodes"].iloc[0]


def test_load_times_has_a_row_per_artifact(conv_onnx, tmp_path):
    from kit.optimize.graph import load_times

    source = ModelArtifact.from_path(conv_onnx)
    art = ort_optimize(source, "extended", out=tmp_path / "e.onnx")
    frame = load_times([source, art], repeats=2)
    assert list(frame["name"]) == [source.name, art.name] and (frame["load_ms"] > 0).all()
    assert (frame.load_low_ms <= frame.load_ms).all() and (frame.load_ms <= frame.load_high_ms).all()
    assert (frame["repeats"] == 2).all()
    with pytest.raises(ConfigError):
        load_times([source], repeats=0)


# ---------------------------------------------------------------- models from other exporters (issue 13)

def _inputs(path):
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return [v.name for v in model.graph.input], [v.name for v in model.graph.input if v.name not in inits]


@pytest.mark.parametrize("optimize", ["passes", *ORT_LEVELS])
def test_ir3_graph_keeps_its_inputs_and_initializers_stop_being_inputs(ir3_onnx, tmp_path, optimize):
    art = (apply_passes(str(ir3_onnx), out=tmp_path / "p.onnx") if optimize == "passes"
           else ort_optimize(str(ir3_onnx), optimize, out=tmp_path / f"{optimize}.onnx"))
    listed, real = _inputs(art.path)
    assert listed == real == ["x"]
    assert any("IR version 3" in c for c in art.params["normalized"])
    assert art.metrics["max_abs_diff_vs_parent"] < 1e-4 and art.metrics["checked_with"].startswith("synthetic")


@pytest.mark.parametrize("optimize", ["passes", *ORT_LEVELS])
def test_if_model_keeps_inputs_its_subgraphs_use(if_onnx, tmp_path, optimize):
    art = (apply_passes(if_onnx, out=tmp_path / "p.onnx") if optimize == "passes"
           else ort_optimize(if_onnx, optimize, out=tmp_path / f"{optimize}.onnx"))
    assert _inputs(art.path)[1] == ["x", "flag", "bias"]
    assert "unconsumed_inputs_dropped" not in art.params
    rng = np.random.default_rng(0)
    for flag in (True, False):
        feeds = {"x": rng.random((3, 4), dtype=np.float32), "flag": np.array(flag), "bias": np.ones(4, np.float32)}
        with OnnxRuntimeEngine(if_onnx) as ref, OnnxRuntimeEngine(art) as new:
            np.testing.assert_allclose(new.predict(feeds)["y"], ref.predict(feeds)["y"], rtol=1e-5, atol=1e-6)


def test_agreement_uses_the_given_feeds_and_says_so(conv_onnx, tmp_path):
    feeds = {"gpu_0/data_0": np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)}
    art = ort_optimize(conv_onnx, "extended", out=tmp_path / "e.onnx", feeds=feeds)
    assert art.metrics["checked_with"] == "the given feeds (gpu_0/data_0[5, 1, 8, 8])"


def test_a_disagreeing_or_input_changing_result_is_refused(identity_chain, tmp_path, monkeypatch):
    import onnxoptimizer

    from kit.optimize import graph

    def add_input(original, passes, fixed_point=False):
        model = onnx.ModelProto.FromString(original.SerializeToString())  # onnxoptimizer returns a new model
        model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
        return model

    monkeypatch.setattr(onnxoptimizer, "optimize", add_input)
    with pytest.raises(ModelLoadError, match=r"does not keep the model's real inputs: added \['extra'\]"):
        apply_passes(identity_chain, out=tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()

    def scale(original, passes, fixed_point=False):
        model = onnx.ModelProto.FromString(original.SerializeToString())
        model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "b"))
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.full(4, 5.0, np.float32), "b"))
        return model

    monkeypatch.setattr(onnxoptimizer, "optimize", scale)
    with pytest.raises(ModelLoadError, match="disagrees with it on synthetic inputs"):
        graph.apply_passes(identity_chain, out=tmp_path / "p.onnx")


def test_an_original_that_fails_on_synthetic_inputs_is_named_not_the_rewrite(tmp_path):
    """x[N, 6] reshaped to a fixed [1, 2, 3]: batch 2's synthetic inputs break the original itself (as a
    Paddle OCR export breaks on a made-up width); the error must not blame the optimized file."""
    nodes = [helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Reshape", ["i", "shape"], ["y"])]
    shape = onnx.numpy_helper.from_array(np.array([1, 2, 3], np.int64), "shape")
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match=r"^fixed itself does not run .*synthetic inputs \(batch 2\): pass input_"):
        apply_passes(path, passes=("eliminate_identity",), out=tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()
    art = apply_passes(path, passes=("eliminate_identity",), out=tmp_path / "p.onnx",
                       feeds={"x": np.ones((1, 6), np.float32)})
    assert op_histogram(art) == {"Reshape": 1}


def test_a_rewrite_that_fails_where_the_original_answers_is_blamed(identity_chain, tmp_path, monkeypatch):
    import onnxoptimizer

    def break_batch(original, passes, fixed_point=False):  # reshapes x to one row: batch 2 no longer fits
        model = onnx.ModelProto.FromString(original.SerializeToString())
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 8], np.int64), "one_row"))
        first = model.graph.node[0]
        model.graph.node.insert(0, helper.make_node("Reshape", ["x", "one_row"], ["x_one_row"]))
        first.input[0] = "x_one_row"
        return model

    monkeypatch.setattr(onnxoptimizer, "optimize", break_batch)
    with pytest.raises(ModelLoadError, match=r"^the optimized model of chain does not run on synthetic inputs "
                                             r"\(batch 2\), which the original answers \(") as caught:
        apply_passes(identity_chain, out=tmp_path / "p.onnx")
    assert "pass input_shapes" not in str(caught.value)  # the inputs are not at fault: no hint to change them
    assert not (tmp_path / "p.onnx").exists()

"""kit.optimize.normalize: old IR graphs, Constant weights, subgraph-aware used names, input checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from kit.artifacts import ModelArtifact, as_artifact
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import ModelLoadError, QuantizationError
from kit.optimize.normalize import MAX_IR_VERSION, check_same_inputs, input_signature, normalize, used_names


def test_ir3_initializers_leave_the_inputs_and_ir_is_raised(ir3_onnx):
    model, changes = normalize(onnx.load(str(ir3_onnx)))
    assert [v.name for v in model.graph.input] == ["x"] and len(model.graph.initializer) == 2
    assert model.ir_version >= 4 and any("2 initializer" in c for c in changes)
    assert any("IR version 3 -> 4" in c for c in changes)
    with OnnxRuntimeEngine(model.SerializeToString()) as engine:
        assert [s.name for s in engine.input_specs] == ["x"]
        assert engine.predict({"x": np.ones((2, 16), np.float32)})["y"].shape == (2, 4)


def test_ir4_initializer_inputs_stay_overridable_unless_asked(old_opset_onnx):
    original = onnx.load(str(old_opset_onnx))
    kept, changes = normalize(original)
    assert len(kept.graph.input) == 3 and not any("initializer" in c for c in changes)
    dropped, _ = normalize(original, drop_initializer_inputs=True)
    assert [v.name for v in dropped.graph.input] == ["x"]
    assert len(original.graph.input) == 3  # the caller's model is not modified


def test_constant_weights_become_initializers(constant_weight_onnx):
    model, changes = normalize(onnx.load(str(constant_weight_onnx)))
    assert "Constant" not in {n.op_type for n in model.graph.node}
    assert {i.name for i in model.graph.initializer} == {"wc", "bc", "wf"}
    assert any("3 Constant" in c for c in changes)
    feeds = {"image": np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)}
    with OnnxRuntimeEngine(constant_weight_onnx) as a, OnnxRuntimeEngine(model.SerializeToString()) as b:
        np.testing.assert_allclose(a.predict(feeds)["y"], b.predict(feeds)["y"], rtol=1e-6)


def test_unnamed_nodes_get_unique_names_and_ir_is_capped(cast_heavy_onnx):
    model = onnx.load(str(cast_heavy_onnx))
    model.ir_version = 14
    normalized, changes = normalize(model)
    names = [n.name for n in normalized.graph.node]
    assert all(names) and len(set(names)) == len(names) and any("7 unnamed" in c for c in changes)
    assert normalized.ir_version == MAX_IR_VERSION


def test_nothing_to_do_means_no_changes(conv_onnx):
    assert normalize(onnx.load(str(conv_onnx)))[1] == []


def test_used_names_look_inside_subgraphs(if_onnx):
    graph = onnx.load(str(if_onnx)).graph
    main_only = {i for n in graph.node for i in n.input}
    assert main_only == {"flag"}
    assert {"flag", "x", "bias", "w", "y"} <= used_names(graph)


def test_check_same_inputs_names_what_changed(if_onnx, ir3_onnx):
    model = onnx.load(str(if_onnx))
    check_same_inputs(model, model)
    lost = onnx.load(str(if_onnx))
    lost.graph.input.remove(next(v for v in lost.graph.input if v.name == "bias"))
    with pytest.raises(ModelLoadError, match=r"lost \['bias'\].*expected exactly \[x: float32 rank 2"):
        check_same_inputs(model, lost)
    retyped = onnx.load(str(if_onnx))
    retyped.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    with pytest.raises(QuantizationError, match=r"changed dtype or rank of \['x'\]"):
        check_same_inputs(model, retyped, error=QuantizationError)
    ir3 = onnx.load(str(ir3_onnx))  # initializers listed as inputs are not real inputs on either side
    assert list(input_signature(ir3)) == ["x"]
    check_same_inputs(ir3, normalize(ir3)[0])
    with pytest.raises(ModelLoadError, match=r"added \['w1', 'w2'\] \(2\)"):
        check_same_inputs(normalize(ir3)[0], _initializers_dropped(ir3))


def _initializers_dropped(model):
    """What pre-processing did to one IR-3 model: its constants became plain graph inputs."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.initializer[:]
    return copy


def test_as_artifact_takes_paths_and_artifacts(conv_onnx):
    art = as_artifact(str(conv_onnx))
    assert isinstance(art, ModelArtifact) and art.format == "onnx"
    assert as_artifact(art) is art and as_artifact(conv_onnx).path == art.path
    with pytest.raises(ModelLoadError, match="expected a ModelArtifact or a path"):
        as_artifact(42)


def test_used_names_see_loop_bodies_nested_in_if_branches():
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [4])])
    out = helper.make_tensor_value_info("r", TensorProto.FLOAT, [4])
    then = helper.make_graph([helper.make_node("Loop", ["trips", "", "start"], ["r"], body=body)], "then", [], [out])
    other = helper.make_graph([helper.make_node("Identity", ["start"], ["r"])], "else", [], [out])
    graph = helper.make_graph([helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)], "g",
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in (
                                  ("flag", TensorProto.BOOL, []), ("trips", TensorProto.INT64, []),
                                  ("start", TensorProto.FLOAT, [4]), ("step", TensorProto.FLOAT, [4]))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    assert {"flag", "trips", "start", "step"} <= used_names(graph)

"""ORT quantization and float16 on tiny models, including the odd ones users bring."""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest

from kit.artifacts import ModelArtifact
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import ConfigError, InputError, QuantizationError
from kit.optimize.float16 import Float16Config, to_float16
from kit.optimize.prepare import op_types
from kit.optimize.quantize_onnx import DynamicQuantConfig, StaticQuantConfig, quantize_dynamic, quantize_static
from kit.specs import synthetic_feeds


def _run(path, batch=3, seed=0):
    with OnnxRuntimeEngine(path) as engine:
        feeds = synthetic_feeds(engine.input_specs, batch_size=batch, seed=seed, symbols={"seq": 5})
        return feeds, engine.predict(feeds), engine


def _calibration(n=32, seed=0):
    return {"gpu_0/data_0": np.random.default_rng(seed).random((n, 1, 8, 8), dtype=np.float32)}


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_dynamic_quantization_runs_and_records_lineage(mlp_onnx, tmp_path):
    source = ModelArtifact.from_path(mlp_onnx)
    art = quantize_dynamic(source, out=tmp_path / "mlp-int8.onnx")
    assert art.path.exists() and art.parent is source and art.transform == "quantize_dynamic"
    assert art.params["weight_type"] == "int8" and "cpu_int8_flags" in art.metrics
    ops = op_types(onnx.load(str(art.path)))
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops
    _, want, _ = _run(mlp_onnx)
    _, got, _ = _run(art.path)
    assert got["probabilities"].shape == (3, 10) and got["probabilities"].dtype == np.float32
    assert np.max(np.abs(got["probabilities"] - want["probabilities"])) < 0.05


@pytest.mark.parametrize("options", [dict(weight_type="uint8"), dict(per_channel=True, reduce_range=True)])
def test_dynamic_options_are_recorded(mlp_onnx, tmp_path, options):
    art = quantize_dynamic(ModelArtifact.from_path(mlp_onnx), DynamicQuantConfig(**options), out=tmp_path / "q.onnx")
    assert all(art.params[k] == v for k, v in options.items())
    assert _run(art.path)[1]["probabilities"].shape == (3, 10)


def test_keyword_overrides_apply_on_top_of_a_config(mlp_onnx, tmp_path):
    art = quantize_dynamic(ModelArtifact.from_path(mlp_onnx), DynamicQuantConfig(weight_type="uint8"),
                           out=tmp_path / "q.onnx", per_channel=True)
    assert art.params["weight_type"] == "uint8" and art.params["per_channel"] is True
    assert art.name.endswith(DynamicQuantConfig(weight_type="uint8", per_channel=True).tag)


@pytest.mark.parametrize("config", [
    StaticQuantConfig(),  # QDQ U8S8 MinMax
    StaticQuantConfig(activation_type="int8", weight_type="int8", calibration="entropy"),  # QDQ S8S8
    StaticQuantConfig(format="qoperator", calibration="percentile", per_channel=True),
])
def test_static_quantization_modes_run_with_float_io(conv_onnx, tmp_path, config):
    source = ModelArtifact.from_path(conv_onnx)
    art = quantize_static(source, _calibration(), config, out=tmp_path / "q.onnx")
    ops = op_types(onnx.load(str(art.path)))
    assert ("QuantizeLinear" in ops) if config.format == "qdq" else ("QLinearConv" in ops)
    assert art.params["calibration_samples_used"] == 32 and art.params["activation_type"] == config.activation_type
    feeds, got, engine = _run(art.path, batch=2)
    assert engine.input_specs[0].name == "gpu_0/data_0" and engine.input_specs[0].dtype == np.float32
    out = got["gpu_0/softmax_1"]
    assert out.shape == (2, 10) and out.dtype == np.float32 and np.all(np.isfinite(out))


def test_calibration_sample_count_caps_the_samples(conv_onnx, tmp_path):
    art = quantize_static(ModelArtifact.from_path(conv_onnx), _calibration(40), calibration_samples=12,
                          calibration_batch_size=5, out=tmp_path / "q.onnx")
    assert art.params["calibration_samples_used"] == 12


def test_calibration_accepts_a_list_of_feed_dicts(conv_onnx, tmp_path):
    data = _calibration(6)["gpu_0/data_0"]
    batches = [{"gpu_0/data_0": data[i:i + 2]} for i in range(0, 6, 2)]
    art = quantize_static(ModelArtifact.from_path(conv_onnx), batches, out=tmp_path / "q.onnx")
    assert art.params["calibration_samples_used"] == 6


def test_excluded_op_types_stay_float(conv_onnx, tmp_path):
    art = quantize_static(ModelArtifact.from_path(conv_onnx), _calibration(), format="qoperator",
                          exclude_op_types=("Gemm",), out=tmp_path / "q.onnx")
    ops = op_types(onnx.load(str(art.path)))
    assert "Gemm" in ops and "QGemm" not in ops and "QLinearConv" in ops


def test_excluding_an_unknown_node_is_a_config_error(conv_onnx, tmp_path):
    with pytest.raises(ConfigError, match="does not have"):
        quantize_dynamic(ModelArtifact.from_path(conv_onnx), exclude_nodes=("nope",), out=tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("data, match", [
    ({"gpu_0/data_0": np.zeros((0, 1, 8, 8), np.float32)}, "empty"),
    ([], "empty"),
    ({"gpu_0/data_0": np.zeros((4, 1, 9, 9), np.float32)}, r"shape \(4, 1, 9, 9\), expected"),
    ({"gpu_0/data_0": np.zeros((4, 1, 8, 8), np.float64)}, "dtype float64, expected float32"),
    ({"image": np.zeros((4, 1, 8, 8), np.float32)}, "missing"),
])
def test_bad_calibration_data_gives_a_clear_error_and_no_file(conv_onnx, tmp_path, data, match):
    with pytest.raises(InputError, match=match) as info:
        quantize_static(ModelArtifact.from_path(conv_onnx), data, out=tmp_path / "q.onnx")
    assert "gpu_0/data_0: float32[N, 1, 8, 8]" in str(info.value)
    assert not (tmp_path / "q.onnx").exists() and not _leftovers(tmp_path)


def test_float16_keeps_float32_io(conv_onnx, tmp_path):
    art = to_float16(ModelArtifact.from_path(conv_onnx), out=tmp_path / "h.onnx")
    model = onnx.load(str(art.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    _, want, _ = _run(conv_onnx)
    _, got, _ = _run(art.path)
    assert got["gpu_0/softmax_1"].dtype == np.float32
    assert np.allclose(got["gpu_0/softmax_1"], want["gpu_0/softmax_1"], atol=1e-2)


def test_old_opset_with_initializers_as_inputs_is_upgraded(old_opset_onnx, tmp_path):
    source = ModelArtifact.from_path(old_opset_onnx)
    for art in (quantize_dynamic(source, out=tmp_path / "d.onnx"), to_float16(source, out=tmp_path / "h.onnx")):
        assert art.params["opset_upgraded_from"] == 9 and art.params["initializer_inputs_removed"] == 2
        feeds, got, engine = _run(art.path)
        assert [s.name for s in engine.input_specs] == ["x"] and got["y"].shape == (3, 4)


def test_several_inputs_outputs_and_symbolic_dims(multi_io_onnx, tmp_path):
    source = ModelArtifact.from_path(multi_io_onnx)
    rng = np.random.default_rng(0)
    calib = {"tokens": rng.random((8, 5, 16), dtype=np.float32), "context": rng.random((8, 16), dtype=np.float32)}
    for art in (quantize_dynamic(source, out=tmp_path / "d.onnx"),
                quantize_static(source, calib, out=tmp_path / "s.onnx"), to_float16(source, out=tmp_path / "h.onnx")):
        _, got, _ = _run(art.path)
        assert got["hidden"].shape == (3, 5, 16) and got["pooled"].shape == (3, 16)


def test_runtime_computed_weights_need_offline_optimization(runtime_weight_onnx, tmp_path):
    source = ModelArtifact.from_path(runtime_weight_onnx)
    with pytest.raises(QuantizationError, match="computed at run time.*offline optimization"):
        quantize_dynamic(source, preprocess=False, out=tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists() and not _leftovers(tmp_path)
    art = quantize_dynamic(source, out=tmp_path / "q.onnx")  # pre-processing folds ConstantOfShape
    assert art.params["preprocessed"] and _run(art.path)[1]["y"].shape == (3, 8)


def test_non_onnx_artifact_is_refused(tmp_path):
    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"x")
    with pytest.raises(QuantizationError, match="takes an ONNX model"):
        quantize_dynamic(ModelArtifact.from_path(fake), out=tmp_path / "q.onnx")


def test_warns_without_vnni(mlp_onnx, tmp_path, monkeypatch):
    sysinfo = importlib.import_module("kit.profile.sysinfo")  # kit.profile.profile shadows the attribute path
    monkeypatch.setattr(sysinfo, "has_fast_int8", lambda flags=None: False)
    with pytest.warns(RuntimeWarning, match="reduce_range=True"):
        quantize_dynamic(ModelArtifact.from_path(mlp_onnx), out=tmp_path / "q.onnx")


@pytest.mark.parametrize("make", [
    lambda: DynamicQuantConfig(weight_type="int4"),
    lambda: StaticQuantConfig(format="qdq2"),
    lambda: StaticQuantConfig(calibration="kl"),
    lambda: StaticQuantConfig(calibration_samples=0),
    lambda: StaticQuantConfig(percentile=10.0),
    lambda: Float16Config(exclude_op_types=("",)),
])
def test_bad_configs_fail_early(make):
    with pytest.raises(ConfigError):
        make()


def test_static_keeps_softmax_float_by_default(conv_onnx, tmp_path):
    art = quantize_static(ModelArtifact.from_path(conv_onnx), _calibration(), out=tmp_path / "q.onnx")
    model = onnx.load(str(art.path))
    softmax_out = next(n.output[0] for n in model.graph.node if n.op_type == "Softmax")
    assert not any(n.op_type == "QuantizeLinear" and softmax_out in n.input for n in model.graph.node)
    assert art.params["exclude_op_types"] == ("Softmax",)


def test_standard_variants_are_all_distinct_and_run(conv_onnx, tmp_path):
    from kit.optimize.quantize_onnx import standard_variants

    arts = standard_variants(ModelArtifact.from_path(conv_onnx), _calibration(16), tmp_path, calibration_samples=16)
    assert len({a.name for a in arts}) == len(arts) == 6
    assert {a.transform for a in arts} == {"quantize_dynamic", "quantize_static", "to_float16"}
    assert len(standard_variants(ModelArtifact.from_path(conv_onnx), None, tmp_path, float16=False)) == 1


@pytest.mark.parametrize("preprocess", [True, False])
def test_ort_fused_model_cannot_be_quantized_and_says_why(conv_onnx, tmp_path, preprocess, monkeypatch):
    from kit.optimize.graph import ort_optimize

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # ORT's failed shape inference dumps files into the working directory
    fused = ort_optimize(ModelArtifact.from_path(conv_onnx), "extended", out=tmp_path / "fused.onnx")
    with pytest.raises(QuantizationError, match="ONNX Runtime-specific ops.*FusedConv.*quantize the original"):
        quantize_dynamic(fused, preprocess=preprocess, out="q.onnx")  # a relative path, too
    assert not (cwd / "q.onnx").exists() and not _leftovers(tmp_path)
    assert list(cwd.iterdir()) == []


def test_variant_tags_name_every_choice():
    tags = {DynamicQuantConfig().tag, DynamicQuantConfig(op_types=("MatMul",)).tag,
            DynamicQuantConfig(preprocess=False).tag, StaticQuantConfig().tag,
            StaticQuantConfig(exclude_op_types=()).tag, StaticQuantConfig(per_channel=True).tag,
            StaticQuantConfig(exclude_nodes=("fc",)).tag, StaticQuantConfig(calibration="entropy").tag}
    assert len(tags) == 8


# ---------------------------------------------------------------- models from other exporters (issue 13)

def _real_inputs(path):
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in inits], [v.name for v in model.graph.input]


def test_ir3_graph_keeps_exactly_its_inputs(ir3_onnx, tmp_path):
    calib = {"x": np.random.default_rng(0).random((8, 16), dtype=np.float32)}
    for art in (quantize_dynamic(ir3_onnx, out=tmp_path / "d.onnx"),
                quantize_static(ir3_onnx, calib, out=tmp_path / "s.onnx"),
                to_float16(ir3_onnx, out=tmp_path / "h.onnx")):
        real, listed = _real_inputs(art.path)
        assert real == listed == ["x"], art.name  # no initializer is a graph input any more
        assert art.params["initializer_inputs_removed"] == 2
        assert any("IR version 3" in c for c in art.params["normalized"])
        assert _run(art.path)[1]["y"].shape == (3, 4)


@pytest.mark.parametrize("preprocess", [True, False])
def test_constant_node_weights_quantize_dynamic_and_static(constant_weight_onnx, tmp_path, preprocess):
    rng = np.random.default_rng(0)
    calib = {"image": rng.random((16, 3, 8, 8), dtype=np.float32)}
    dyn = quantize_dynamic(constant_weight_onnx, preprocess=preprocess, out=tmp_path / "d.onnx")
    static = quantize_static(constant_weight_onnx, calib, preprocess=preprocess, out=tmp_path / "s.onnx")
    assert any("3 Constant node(s) folded" in c for c in dyn.params["normalized"])
    assert "ConvInteger" in op_types(onnx.load(str(dyn.path))) or "DynamicQuantizeLinear" in op_types(
        onnx.load(str(dyn.path)))
    assert "QuantizeLinear" in op_types(onnx.load(str(static.path)))
    assert static.metrics["checked_with"].startswith("the first calibration batch (image[8, 3, 8, 8])")
    assert static.metrics["quality_ok"], static.metrics["quality"]
    feeds = {"image": rng.random((4, 3, 8, 8), dtype=np.float32)}  # the calibration's distribution
    with OnnxRuntimeEngine(constant_weight_onnx) as engine:
        want = engine.predict(feeds)["y"]
    for art in (dyn, static):
        with OnnxRuntimeEngine(art.path) as engine:
            got = engine.predict(feeds)["y"]
        assert np.max(np.abs(got - want)) < 0.05 * np.ptp(want), art.name


def _fake_pre_process(fail_symbolic: bool, fail_plain: bool, add_inputs: bool = False):
    import shutil

    def pre_process(src, dst, skip_symbolic_shape=False, **_):
        if (fail_symbolic and not skip_symbolic_shape) or (fail_plain and skip_symbolic_shape):
            raise RuntimeError("Incomplete symbolic shape inference" if not skip_symbolic_shape else "shape mismatch")
        if add_inputs:  # what pre-processing once did to an IR-3 model: constants became graph inputs
            model = onnx.load(src)
            for init in model.graph.initializer:
                model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
            del model.graph.initializer[:]
            onnx.save(model, dst)
        else:
            shutil.copy(src, dst)
    return pre_process


@pytest.mark.parametrize("fail_symbolic, fail_plain, add_inputs, used, failures", [
    (True, False, False, "without symbolic shape inference", 1),
    (True, True, False, None, 2),
    (False, False, True, None, 2),
])
def test_pre_processing_falls_back_and_says_what_was_tried(constant_weight_onnx, tmp_path, monkeypatch,
                                                           fail_symbolic, fail_plain, add_inputs, used, failures):
    from onnxruntime.quantization import shape_inference

    monkeypatch.setattr(shape_inference, "quant_pre_process", _fake_pre_process(fail_symbolic, fail_plain, add_inputs))
    art = quantize_dynamic(constant_weight_onnx, out=tmp_path / "q.onnx")
    assert art.params.get("preprocessed") == used and len(art.params["preprocess_failed"]) == failures
    assert _real_inputs(art.path)[1] == ["image"]
    if add_inputs:
        assert "does not keep the model's real inputs" in art.params["preprocess_failed"][0]


def test_one_message_says_everything_that_was_tried(constant_weight_onnx, tmp_path, monkeypatch):
    from onnxruntime.quantization import shape_inference

    import kit.optimize.quantize_onnx as q

    monkeypatch.setattr(shape_inference, "quant_pre_process", _fake_pre_process(True, True))

    def broken(*args, **kwargs):
        raise ValueError("Expected wc to be an initializer")

    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", broken)
    with pytest.raises(QuantizationError) as info:
        q.quantize_dynamic(constant_weight_onnx, out=tmp_path / "q.onnx")
    message = str(info.value)
    assert "Expected wc to be an initializer" in message and "Constant node(s) folded" in message
    assert "with symbolic shape inference failed" in message and "without symbolic shape inference failed" in message
    assert "preprocess=True" not in message and "preprocess=False" not in message
    assert not (tmp_path / "q.onnx").exists()


def test_cast_heavy_model_to_float16_keeps_casts_in_float32(cast_heavy_onnx, tmp_path):
    art = to_float16(str(cast_heavy_onnx), out=tmp_path / "h.onnx")
    assert art.params["float32_op_types"] == ["Cast"] and art.params["float32_nodes"] == 2
    assert any("unnamed node(s) named" in c for c in art.params["normalized"])
    model = onnx.load(str(art.path))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    _, want, _ = _run(cast_heavy_onnx)
    _, got, _ = _run(art.path)
    np.testing.assert_allclose(got["y"], want["y"], atol=1e-2)
    assert art.metrics["quality_ok"] and art.metrics["checked_with"].startswith("synthetic")


def test_a_variant_returning_nan_is_refused(tmp_path):
    """On a CPU, ONNX Runtime runs float16 ops through float32 casts, so overflow NaN shows only on a GPU
    (DESIGN.md §6); the refusal itself is checked here with a child that returns NaN."""
    from onnx import TensorProto, helper

    from kit.optimize.prepare import self_check

    def save(nodes, name, inits=()):
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], list(inits))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 10
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        return tmp_path / f"{name}.onnx"

    parent = save([helper.make_node("Identity", ["x"], ["y"])], "parent")
    child = save([helper.make_node("Sub", ["x", "ten"], ["d"]), helper.make_node("Sqrt", ["d"], ["y"])], "child",
                 [onnx.numpy_helper.from_array(np.array(10.0, np.float32), "ten")])
    feeds = {"x": np.ones((2, 4), np.float32)}
    with pytest.raises(QuantizationError, match=r"broken on the given feeds: y: 8 NaN/inf value\(s\)"):
        self_check(parent, child, "child", feeds, "the given feeds")
    assert self_check(parent, parent, "same", feeds, "the given feeds")["quality_ok"]


def test_paths_are_accepted_and_the_check_names_its_inputs(mlp_onnx, tmp_path):
    feeds = {"features": np.random.default_rng(0).random((4, 16), dtype=np.float32)}
    art = quantize_dynamic(str(mlp_onnx), out=tmp_path / "q.onnx", feeds=feeds)
    assert art.parent.path == mlp_onnx and art.metrics["checked_with"] == "the given feeds (features[4, 16])"
    assert art.metrics["quality_ok"] and "within the gate" in art.metrics["quality"]
    with pytest.raises(InputError):
        quantize_dynamic(mlp_onnx, out=tmp_path / "q2.onnx", feeds={"wrong": feeds["features"]})


def _detector_head(path):
    """One output mixing box coordinates (0-320) and class scores (0-0.5), as YOLO-style heads do."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(7)
    nodes = [helper.make_node("MatMul", ["x", "wb"], ["b0"], name="box_mm"),
             helper.make_node("Sigmoid", ["b0"], ["b1"], name="box_sig"),
             helper.make_node("Mul", ["b1", "k320"], ["boxes"], name="box_scale"),
             helper.make_node("MatMul", ["x", "ws"], ["s0"], name="cls_mm"),
             helper.make_node("Sigmoid", ["s0"], ["s1"], name="cls_sig"),
             helper.make_node("Mul", ["s1", "khalf"], ["scores"], name="cls_scale"),
             helper.make_node("Concat", ["boxes", "scores"], ["output0"], name="concat", axis=1)]
    inits = [onnx.numpy_helper.from_array((rng.standard_normal((16, 4)) * 0.5).astype(np.float32), "wb"),
             onnx.numpy_helper.from_array(rng.standard_normal((16, 3)).astype(np.float32), "ws"),
             onnx.numpy_helper.from_array(np.array(320, np.float32), "k320"),
             onnx.numpy_helper.from_array(np.array(0.5, np.float32), "khalf")]
    graph = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def test_detector_scores_collapsed_by_static_int8_are_caught(tmp_path):
    from kit.optimize.quality import compare

    head = _detector_head(tmp_path / "head.onnx")
    calib = {"x": np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)}
    art = quantize_static(head, calib, out=tmp_path / "q.onnx")  # no slices declared: the whole tensor looks fine
    assert art.metrics["quality_ok"] and art.metrics["min_cosine"] > 0.999
    feeds = {"x": calib["x"][:8]}
    with OnnxRuntimeEngine(head) as ref, OnnxRuntimeEngine(art.path) as new:
        want, got = ref.predict(feeds), new.predict(feeds)
    assert np.all(got["output0"][:, 4:] == 0.0)  # one int8 scale for 0-320 wipes every score
    slices = {"output0": {"boxes": (1, 0, 4), "scores": (1, 4, None, "scores")}}
    report = compare(want, got, slices=slices)
    assert not report.ok and report.reason.startswith("output0[scores]: collapsed to a constant 0")
    assert report.parts[0].cosine > 0.999 and report.parts[1].ok
    with pytest.raises(QuantizationError, match=r"broken on the first calibration batch.*output0\[scores\]: collapsed"):
        quantize_static(head, calib, out=tmp_path / "q2.onnx", slices=slices)
    assert not (tmp_path / "q2.onnx").exists()


def test_float16_retries_with_the_op_type_a_failed_load_names(conv_onnx, tmp_path, monkeypatch):
    import kit.optimize.float16 as q

    real, calls = q.verify, []

    def verify_once_failing(path, name, feeds=None):
        calls.append(path)
        if len(calls) == 1:
            raise QuantizationError("the quantized model does not run in ONNX Runtime (Type Error: Type "
                                    "(tensor(float16)) of output arg (r) of node (relu) does not match)")
        return real(path, name, feeds)

    monkeypatch.setattr(q, "verify", verify_once_failing)
    art = q.to_float16(conv_onnx, out=tmp_path / "h.onnx")
    assert art.params["float32_op_types"] == ["Relu"] and art.params["float32_nodes"] == 1
    assert any(n.op_type == "Cast" and n.name.startswith("relu") for n in onnx.load(str(art.path)).graph.node)

    def always_failing(path, name, feeds=None):
        raise QuantizationError("does not run (Type Error ... of node (relu) ...)")

    monkeypatch.setattr(q, "verify", always_failing)
    with pytest.raises(QuantizationError, match=r"kept in float32: \['Relu'\]"):
        q.to_float16(conv_onnx, out=tmp_path / "h2.onnx")
    assert not (tmp_path / "h2.onnx").exists()


def test_float16_of_an_if_model_refuses_clearly_and_unsorted_branches_are_sorted(if_onnx, tmp_path):
    """A branch reading a main-graph weight gets it as float16 beside a float32 input, whatever is kept
    in float32 (onnxconverter-common converts outer-scope initializers): one clear refusal, no file."""
    from kit.optimize.float16 import _sort_subgraphs

    feeds = {"x": np.ones((2, 4), np.float32), "flag": np.array(True), "bias": np.ones(4, np.float32)}
    with pytest.raises(QuantizationError, match=r"then_mm.*kept in float32: \['If', 'MatMul'\]"):
        to_float16(if_onnx, out=tmp_path / "h.onnx", feeds=feeds)
    assert not (tmp_path / "h.onnx").exists()
    model = onnx.load(str(if_onnx))
    then = next(a.g for a in model.graph.node[0].attribute if a.name == "then_branch")
    nodes = list(then.node)
    del then.node[:]
    then.node.extend(reversed(nodes))  # what onnxconverter-common's appended casts do to a branch
    _sort_subgraphs(model)
    assert [n.name for n in then.node] == ["then_mm", "then_add"]



def test_standard_variants_leave_a_broken_variant_out_when_asked(mlp_onnx, tmp_path, monkeypatch):
    """One variant that cannot be made ended notebook 01 on a real OCR model; the others are still worth measuring."""
    import kit.optimize.quantize_onnx as q

    def broken(*args, **kwargs):
        raise QuantizationError("the quantized model x-fp16 does not run in ONNX Runtime (Concat)\nmore detail")

    monkeypatch.setattr(q, "to_float16", broken)
    failures: dict[str, str] = {}
    calibration = [{"features": np.ones((1, 16), np.float32)}]
    variants = q.standard_variants(mlp_onnx, calibration, tmp_path / "out", static=False, failures=failures)
    assert [v.transform for v in variants] == ["quantize_dynamic"]
    assert failures == {"float16": "the quantized model x-fp16 does not run in ONNX Runtime (Concat)"}
    with pytest.raises(QuantizationError):
        q.standard_variants(mlp_onnx, None, tmp_path / "out2", static=False)


@pytest.fixture(scope="module")
def needs_real_width(tmp_path_factory):
    """x[1, w] reshaped to [1, 2, w/2], then a MatMul: made-up inputs (w = 1) break the original itself,
    as a Paddle OCR export breaks on a made-up width; w = 4 is what it takes."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    weight = onnx.numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "w")
    shape = onnx.numpy_helper.from_array(np.array([1, 2, -1], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])]
    graph = helper.make_graph(nodes, "width", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])], [weight, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path_factory.mktemp("width") / "width.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("convert", [
    lambda path, out, **kw: quantize_dynamic(path, out=out, preprocess=False, **kw),
    lambda path, out, **kw: to_float16(path, out=out, **kw),
], ids=["dynamic int8", "float16"])
def test_an_original_that_breaks_on_made_up_inputs_is_named_not_the_conversion(needs_real_width, tmp_path,
                                                                                convert):
    with pytest.raises(QuantizationError, match=r"the original of width-\S+ does not run on synthetic inputs "
                                                r"\(batch 1, unknown dims 1\), so .* pass input_shapes"):
        convert(needs_real_width, tmp_path / "v.onnx")
    assert not (tmp_path / "v.onnx").exists()
    art = convert(needs_real_width, tmp_path / "v.onnx", feeds={"x": np.ones((1, 4), np.float32)})
    assert art.metrics["checked_with"].startswith("the given feeds")

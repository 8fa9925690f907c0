"""evaluate/recommend judge every output and slice (quality.compare), respect noise, and take user metrics."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from kit.artifacts import ModelArtifact
from kit.optimize.evaluate import _speed_columns, beyond_noise, evaluate, recommend
from kit.profile.results import LoadResult

FAST = dict(min_duration_s=0.05, rounds=2, min_queries=3, warmup=1, batch_sizes=(1,))


def _model(path, second: str) -> ModelArtifact:
    """x[batch, 8] -> boxes (x * 10, a 0-80 range) and scores; ``second`` picks how scores are made."""
    ten = helper.make_tensor("ten", TensorProto.FLOAT, [], [10.0])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [helper.make_node("Mul", ["x", "ten"], ["boxes"])]
    if second == "same":
        nodes.append(helper.make_node("Sigmoid", ["x"], ["scores"]))
    else:  # collapsed: every score exactly 0, as after a bad int8 scale
        nodes.append(helper.make_node("Mul", ["x", "zero"], ["scores"]))
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", 8]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8])],
                              [ten, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return ModelArtifact.from_path(path, name=path.stem)


def _mixed(path, broken: bool) -> ModelArtifact:
    """One output [batch, 8]: columns 0-3 are boxes (0-320), 4-7 scores (0-1); ``broken`` zeroes the scores."""
    scale = np.array([320] * 4 + [1] * 4, np.float32) * np.array([1] * 4 + [0 if broken else 1] * 4, np.float32)
    graph = helper.make_graph([helper.make_node("Mul", ["x", "scale"], ["y"])], "mixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor("scale", TensorProto.FLOAT, [8], scale)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return ModelArtifact.from_path(path, name=path.stem)


def _data(n=16):
    return {"x": np.random.default_rng(0).random((n, 8), dtype=np.float32)}


def _fast(frame, name, rounds_ms):
    """Pretend ``name`` measured these round medians (and a far faster p50)."""
    index = frame.index[frame["name"] == name][0]
    frame.at[index, "round_p50s_ms"] = list(rounds_ms)
    frame.at[index, "p50_ms"] = float(np.median(rounds_ms))
    return frame


def test_the_worst_output_decides(tmp_path):
    ref, same, bad = (_model(tmp_path / "ref.onnx", "same"), _model(tmp_path / "same.onnx", "same"),
                      _model(tmp_path / "bad.onnx", "collapsed"))
    frame = evaluate([same, bad], ref, _data(), top1=False, **FAST)
    rows = frame.set_index("name")
    assert rows.loc["same", "quality_ok"] and not rows.loc["bad", "quality_ok"]
    assert rows.loc["bad", "worst_output"] == "scores" and "collapsed" in rows.loc["bad", "quality_reason"]
    assert rows.loc["bad", "rel_error[boxes]"] == 0.0  # the first output alone looks perfect
    frame = _fast(frame, "bad", [0.001, 0.001])
    rec = recommend(frame, accuracy_budget=None, min_cosine=-1.0)
    assert rec.best != "bad" and rec.reasons["bad"].startswith("quality gate failed"), str(rec)


def test_a_collapsed_slice_is_never_recommended(tmp_path):
    ref, bad = _mixed(tmp_path / "ref.onnx", False), _mixed(tmp_path / "int8.onnx", True)
    whole = evaluate([bad], ref, _data(), top1=False, **FAST)
    assert whole.set_index("name").loc["int8", "cosine"] > 0.999  # whole-tensor cosine sees nothing
    frame = evaluate([bad], ref, _data(), top1=False, slices={"y": {"scores": (1, 4, None, "scores")}}, **FAST)
    row = frame.set_index("name").loc["int8"]
    assert not row["quality_ok"] and "y[scores]" in row["quality_reason"] and "rel_error[y[scores]]" in frame
    rec = recommend(_fast(frame, "int8", [0.001, 0.001]), accuracy_budget=None, min_cosine=0.9)
    assert rec.best == "ref" and "quality gate failed" in rec.reasons["int8"], str(rec)


def test_a_variant_whose_own_check_failed_is_never_recommended(tmp_path):
    ref = _model(tmp_path / "ref.onnx", "same")
    (tmp_path / "flagged.onnx").write_bytes(ref.path.read_bytes())
    flagged = ref.derive(tmp_path / "flagged.onnx", "quantize_static", name="flagged",
                         metrics={"quality_ok": False, "quality": "state: cosine 0.01"})
    frame = _fast(evaluate([flagged], ref, _data(), top1=False, **FAST), "flagged", [0.001, 0.001])
    rec = recommend(frame, accuracy_budget=None, min_cosine=0.0)
    assert rec.best == "ref" and "own check failed: state: cosine 0.01" in rec.reasons["flagged"]


def _fake(label, rounds_ms, per_round=5):
    lat = np.concatenate([np.full(per_round, r / 1000) for r in rounds_ms])
    sent = np.arange(lat.size) * 0.1
    return LoadResult("single_stream", {}, sent, sent, sent + lat, np.ones(lat.size, bool), 1,
                      float(sent[-1] + 1), label=label, rounds=np.repeat(np.arange(len(rounds_ms)), per_round))


def _speed_frame(results):
    frame = pd.DataFrame([{"name": r.label, "batch_size": 1, "ok": True, "failure": "", "quality_ok": True,
                           "cosine": 1.0, **_speed_columns(r)} for r in results])
    ref = frame.loc[0, "p50_ms"]
    frame["speedup"] = ref / frame["p50_ms"]
    frame.attrs["reference"] = results[0].label
    return frame


def test_a_variant_faster_within_noise_is_not_a_winner():
    # 1.5 % faster by the median, but its rounds overlap the reference's
    frame = _speed_frame([_fake("fp32", [10.0, 10.4, 9.8, 10.6]), _fake("int8", [9.9, 10.2, 9.7, 10.3])])
    rec = recommend(frame, accuracy_budget=None, min_cosine=0.5)
    assert rec.best == "fp32" and rec.within_noise and "within noise" in rec.verdict
    assert "difference within noise" in rec.reasons["int8"] and "within noise" in repr(rec)
    assert "\n" not in repr(rec)


def test_a_variant_faster_beyond_noise_wins():
    frame = _speed_frame([_fake("fp32", [10.0, 10.4, 9.8, 10.6]), _fake("int8", [6.0, 6.5, 6.2, 6.4]),
                          _fake("fp16", [9.0, 9.9, 9.2, 9.1])])
    rec = recommend(frame, accuracy_budget=None, min_cosine=0.5)
    assert rec.best == "int8" and not rec.within_noise and "beyond noise" in rec.verdict
    assert "slower" in rec.reasons["fp16"] and "slower" in rec.reasons["fp32"]
    assert beyond_noise([6.0, 6.5], [9.8, 10.6]) and not beyond_noise([9.0, 9.9], [9.8, 10.6])
    assert beyond_noise([6.0], [9.0, 10.0]) is None


def test_a_user_metric_by_module_function(tmp_path, monkeypatch):
    (tmp_path / "my_metric.py").write_text(
        "import numpy as np\n"
        "def score_error(reference, candidate, labels):\n"
        "    return float(np.mean(np.abs(reference['scores'] - candidate['scores'])))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_metric", None)
    ref, bad = _model(tmp_path / "ref.onnx", "same"), _model(tmp_path / "bad.onnx", "collapsed")
    frame = evaluate([bad], ref, _data(), top1=False, metric="my_metric:score_error", higher_is_better=False,
                     **FAST)
    rows = frame.set_index("name")
    assert rows.loc["ref", "metric"] == 0.0 and rows.loc["bad", "metric"] > 0.4
    assert rows.loc["bad", "metric_drop_pts"] == pytest.approx(100 * rows.loc["bad", "metric"])
    assert rows.loc["bad", "accuracy_drop_pts"] == rows.loc["bad", "metric_drop_pts"]


def test_evaluate_takes_a_dataset_and_its_labels(tmp_path):
    from kit.data import load_data
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    ref, same = _model(tmp_path / "ref.onnx", "same"), _model(tmp_path / "same.onnx", "same")
    with OnnxRuntimeEngine(ref.path) as engine:
        specs = engine.input_specs
    data = load_data({**_data(10), "labels": np.arange(10) % 8}, specs)
    frame = evaluate([same], ref, data, **FAST)
    assert frame.attrs["data"] == data.describe() and (frame["checked_with"] == data.describe()).all()
    assert frame["accuracy"].notna().all() and frame["quality_ok"].all()


def test_quantization_self_check_takes_a_dataset_and_names_it(conv_onnx, tmp_path):
    from kit.data import load_data
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.optimize import quantize_dynamic

    with OnnxRuntimeEngine(conv_onnx) as engine:
        data = load_data(None, engine.input_specs, input_shapes={"gpu_0/data_0": [4, 1, 8, 8]}, samples=4)
    art = quantize_dynamic(conv_onnx, out=tmp_path / "d.onnx", feeds=data)
    assert art.metrics["checked_with"].startswith("the first 4 sample(s) of synthetic inputs")


def test_frames_concatenate_and_the_quality_tables_are_records(tmp_path):
    ref, same = _model(tmp_path / "ref.onnx", "same"), _model(tmp_path / "same.onnx", "same")
    one = evaluate([same], ref, _data(), top1=False, **FAST)
    two = evaluate([], ref, _data(), top1=False, **FAST)
    assert len(pd.concat([one, two])) == 3  # pandas compares attrs when concatenating
    assert set(pd.DataFrame(one.attrs["quality"]["same"])["output"]) == {"boxes", "scores"}

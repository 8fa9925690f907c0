"""evaluate: sizes, latencies and quality side by side; recommend: the fastest within budget."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, InputError
from kit.optimize.evaluate import EvalConfig, evaluate, recommend
from kit.optimize.quantize_onnx import quantize_dynamic, to_float16

FAST = dict(min_duration_s=0.05, rounds=2, min_queries=3, warmup=1)


@pytest.fixture(scope="module")
def variants(conv_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    source = ModelArtifact.from_path(conv_onnx)
    return source, [quantize_dynamic(source, out=out / "d.onnx"), to_float16(source, out=out / "h.onnx")]


def _data(n=20):
    rng = np.random.default_rng(0)
    return {"gpu_0/data_0": rng.random((n, 1, 8, 8), dtype=np.float32)}, rng.integers(0, 10, n)


def test_evaluate_gives_one_row_per_variant_and_batch(variants):
    source, arts = variants
    data, labels = _data()
    frame = evaluate(arts, source, data, labels=labels, batch_sizes=(1, 4), **FAST)
    assert len(frame) == 6 and set(frame["batch_size"]) == {1, 4}
    assert list(frame["name"][:3]) == [source.name] + [a.name for a in arts]
    ref = frame.iloc[0]
    assert ref["speedup"] == 1.0 and ref["accuracy_drop_pts"] == 0.0 and ref["cosine"] == pytest.approx(1.0)
    for column in ("size_mb", "p50_ms", "p99_ms", "samples_per_s", "accuracy", "top1_agreement", "max_abs_err"):
        assert frame[column].notna().all(), column
    assert frame["ok"].all() and (frame["cosine"] > 0.99).all()
    assert frame.attrs["environment"]["cpu_model"] and "int8_flags" in frame.attrs["environment"]


def test_quality_columns_come_from_compare_and_name_the_data(variants):
    source, arts = variants
    data, labels = _data(12)
    frame = evaluate(arts, source, data, labels=labels, batch_sizes=(1,), **FAST)
    assert frame["quality_ok"].all() and frame["checked_with"].str.startswith("the given feeds").all()
    assert frame.attrs["data"] == "the given feeds (gpu_0/data_0[12, 1, 8, 8])"
    assert {"quality_reason", "quality", "worst_rel_error", "round_p50s_ms", "p50_spread_ms"} <= set(frame.columns)
    assert {"p50_low_ms", "p50_high_ms", "rounds", "speedup_low", "speedup_high"} <= set(frame.columns)
    measured = frame.dropna(subset=["p50_low_ms"])
    assert (measured.p50_low_ms <= measured.p50_high_ms).all() and (measured.speedup_low <= measured.speedup_high).all()
    assert any(c.startswith("rel_error[") for c in frame.columns)
    assert set(frame.attrs["quality"]) == set(frame["name"])


def test_a_broken_variant_is_recorded_and_loses(variants, tmp_path):
    source, arts = variants
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    frame = evaluate([*arts, source.derive(broken, "quantize_dynamic", name="broken")], source, _data()[0],
                     batch_sizes=(1,), **FAST)
    row = frame.set_index("name").loc["broken"]
    assert not row["ok"] and "load failed" in row["failure"]
    rec = recommend(frame, accuracy_budget=100.0)
    assert rec.reasons["broken"].startswith("failed") and rec.best != "broken"


def _frame(rows):
    frame = pd.DataFrame(rows)
    frame.attrs["reference"] = "fp32"
    return frame


def test_recommend_picks_the_fastest_within_budget_and_explains():
    base = dict(batch_size=1, ok=True, failure="")
    frame = _frame([dict(name="fp32", p50_ms=10.0, speedup=1.0, accuracy_drop_pts=0.0, cosine=1.0, **base),
                    dict(name="s8s8", p50_ms=12.0, speedup=0.83, accuracy_drop_pts=0.2, cosine=0.999, **base),
                    dict(name="u8s8", p50_ms=4.0, speedup=2.5, accuracy_drop_pts=0.5, cosine=0.998, **base),
                    dict(name="dyn", p50_ms=3.0, speedup=3.3, accuracy_drop_pts=4.0, cosine=0.97, **base),
                    dict(name="fp16", p50_ms=2.0, speedup=5.0, accuracy_drop_pts=float("nan"), cosine=float("nan"),
                         batch_size=1, ok=False, failure="non-finite outputs (3 NaN/inf values)")])
    rec = recommend(frame, accuracy_budget=1.0)
    assert rec.best == "u8s8" and rec.speedup == 2.5
    assert "exceeds the budget" in rec.reasons["dyn"] and "non-finite" in rec.reasons["fp16"]
    assert "slower" in rec.reasons["s8s8"] and "slower" in rec.reasons["fp32"]
    assert list(rec.table["verdict"]) == ["recommended"] + ["lost"] * 4
    assert recommend(frame, accuracy_budget=5.0).best == "dyn"
    strict = recommend(frame, accuracy_budget=5.0, min_cosine=0.9985)
    assert strict.best == "fp32" and "cosine" in strict.reasons["u8s8"] and "slower" in strict.reasons["s8s8"]
    assert "u8s8" in str(rec)


def test_recommend_keeps_the_reference_when_nothing_beats_it():
    base = dict(batch_size=1, ok=True, failure="")
    frame = _frame([dict(name="fp32", p50_ms=1.0, speedup=1.0, accuracy_drop_pts=0.0, **base),
                    dict(name="int8", p50_ms=2.0, speedup=0.5, accuracy_drop_pts=0.0, **base)])
    assert recommend(frame).best == "fp32"


def test_recommend_validates():
    frame = _frame([dict(name="fp32", p50_ms=1.0, speedup=1.0, batch_size=1, ok=True, failure="")])
    with pytest.raises(ConfigError, match="was not measured"):
        recommend(frame, batch_size=8)
    with pytest.raises(ConfigError):
        recommend(frame, accuracy_budget=-1)


def test_evaluate_validates_inputs(variants):
    source, arts = variants
    with pytest.raises(ConfigError):
        EvalConfig(batch_sizes=(0,))
    with pytest.raises(InputError, match="same number"):
        evaluate(arts, source, {"gpu_0/data_0": np.zeros((0, 1, 8, 8), np.float32)})
    with pytest.raises(InputError, match="labels"):
        evaluate(arts, source, _data(4)[0], labels=np.zeros(3))


def test_warns_about_int8_without_vnni(variants, monkeypatch):
    source, arts = variants
    evaluate_module = importlib.import_module("kit.optimize.evaluate")
    monkeypatch.setattr(evaluate_module, "_environment",
                        lambda: {"cpu_model": "old", "int8_flags": [], "fast_int8": False})
    with pytest.warns(RuntimeWarning, match="reduce_range"):
        evaluate(arts, source, _data(4)[0], batch_sizes=(1,), **FAST)


def test_embeddings_skip_top1_and_recommend_on_cosine(variants):
    source, arts = variants
    frame = evaluate(arts, source, _data(8)[0], batch_sizes=(1,), top1=False, **FAST)
    assert "top1_agreement" not in frame.columns and "accuracy_drop_pts" not in frame.columns
    rec = recommend(frame, accuracy_budget=None, min_cosine=0.99)
    within = frame[frame["ok"] & (frame["cosine"] >= 0.99)]
    assert rec.best in set(within["name"])
    if rec.best != source.name:  # a winner must beat the reference beyond the spread of its rounds
        rows = frame.set_index("name")
        assert max(rows.loc[rec.best, "round_p50s_ms"]) < min(rows.loc[source.name, "round_p50s_ms"])
    with pytest.raises(ConfigError, match="min_cosine"):
        recommend(frame, accuracy_budget=None)


def test_zoo_samples_for_digits_have_labels():
    from kit.zoo import zoo_samples

    data, labels = zoo_samples("digits_cnn", 10, split="train")
    assert data["image"].shape == (10, 8, 8, 1) and labels.shape == (10,)
    with pytest.raises(ConfigError):
        zoo_samples("digits_cnn", 0)


def test_pareto_front_keeps_the_undominated():
    from kit.optimize.evaluate import pareto_front

    frame = pd.DataFrame({"p50_ms": [10.0, 4.0, 5.0, 3.0, float("nan")], "cosine": [1.0, 0.99, 0.98, 0.90, 1.0]})
    assert list(pareto_front(frame)) == [True, True, False, True, False]


def test_evaluate_takes_samples_along_each_inputs_own_axis(tmp_path):
    """A recurrent model's state holds its samples on axis 1 and a sample rate is shared: notebook 01 was skipped."""
    import onnx
    from onnx import TensorProto, helper

    from kit.artifacts import ModelArtifact
    from kit.data import load_data
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["state", "axes"], ["summed"], keepdims=0),  # [batch, 4]
         helper.make_node("Transpose", ["summed"], ["t"], perm=[0, 1]),
         helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["x", "srf"], ["scaled"]),
         helper.make_node("Add", ["scaled", "t"], ["y"])],
        "stateful",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [0])])
    path = tmp_path / "stateful.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    with OnnxRuntimeEngine(path) as engine:
        specs = engine.input_specs
    rng = np.random.default_rng(0)
    data = {"x": rng.random((6, 4), np.float32), "state": rng.random((2, 6, 4), np.float32), "sr": np.array(16000)}
    np.savez(tmp_path / "data.npz", **data)
    ds = load_data(str(tmp_path / "data.npz"), specs)
    art = ModelArtifact(path=path, name="stateful", format="onnx")
    frame = evaluate([], art, ds, batch_sizes=(1, 2), rounds=2, min_duration_s=0.01)
    assert list(frame["batch_size"]) == [1, 2] and frame["ok"].all()
    with OnnxRuntimeEngine(path) as engine:
        from kit.optimize.samples import run_outputs

        out = run_outputs(engine, data, 4, axes={"x": 0, "state": 1, "sr": None})
        assert out["y"].shape == (6, 4)
        np.testing.assert_allclose(out["y"], data["x"] * 16000 + data["state"].sum(axis=0), rtol=1e-6)


def test_a_model_exported_with_a_fixed_batch_above_one_is_fed_in_chunks_of_it(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed4",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "fixed4.onnx"))
    art = ModelArtifact(path=tmp_path / "fixed4.onnx", name="fixed4", format="onnx")
    frame = evaluate([], art, {"x": np.ones((10, 8), np.float32)}, batch_sizes=(4,), rounds=2, min_duration_s=0.01)
    assert frame["ok"].all()

"""A real pretrained detector (PP-OCRv4 det, dynamic sizes) quantized, evaluated and recommended on user-sized data."""

from __future__ import annotations

import pytest
from pretrained import pretrained_path

from kit.artifacts import ModelArtifact


@pytest.mark.slow
def test_ppocr_det_quantized_evaluated_and_recommended_on_user_sized_data(tmp_path):
    from kit.data import load_data
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.optimize import evaluate, quantize_dynamic, quantize_static, recommend

    source = ModelArtifact.from_path(pretrained_path("ppocr-v4-det"), name="ppocr-v4-det")
    with OnnxRuntimeEngine(source.path) as engine:
        data = load_data(None, engine.input_specs, input_shapes={"x": [1, 3, 640, 640]}, samples=4)
    calibration = data.batches(1)[:2]
    variants = []
    for make in (lambda: quantize_dynamic(source, out=tmp_path / "dyn.onnx", feeds=data),
                 lambda: quantize_static(source, calibration, out=tmp_path / "static.onnx")):
        try:
            variants.append(make())
        except Exception as exc:  # a clear refusal is a valid outcome; a silent broken variant is not
            assert "quantiz" in str(exc).lower(), exc
    for art in variants:
        assert "640, 640" in art.metrics.get("checked_with", "") or "the given" in art.metrics.get("checked_with", "")
    frame = evaluate(variants, source, data, batch_sizes=(1,), rounds=3, min_duration_s=1.5, min_queries=3,
                     warmup=1, top1=False, engine_options={"intra_op_num_threads": 2})
    rec = recommend(frame, accuracy_budget=None, min_cosine=-1.0)
    table = frame[["name", "p50_ms", "round_p50s_ms", "quality_ok", "quality_reason"]].to_string()
    verdict = f"{rec!r}\n{rec}\n{table}\nchecked with: {frame.attrs['data']}"
    rows = frame.set_index("name")
    assert (frame["checked_with"] == data.describe()).all(), verdict
    assert rec.best == source.name or bool(rows.loc[rec.best, "quality_ok"]), verdict
    if rec.best != source.name:
        assert max(rows.loc[rec.best, "round_p50s_ms"]) < min(rows.loc[source.name, "round_p50s_ms"]), verdict
    print(verdict)

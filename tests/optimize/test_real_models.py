"""The optimizations on real pretrained models the kit never built (issue-13 classes), from package wheels.

Each model comes from ``tests/pretrained.py`` (a pinned wheel, sha256-checked, cached); the tests skip when
the package index cannot be reached and fail on a changed file.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from pretrained import pretrained_path

from kit.data import load_data
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.optimize.graph import PassConfig, apply_passes, ort_optimize
from kit.optimize.quality import Slice, compare
from kit.optimize.quantize_onnx import quantize_dynamic

pytestmark = pytest.mark.slow


def _real_inputs(path) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def test_an_old_graph_listing_its_weights_as_inputs_keeps_exactly_its_real_input(tmp_path):
    """CenterFace (IR 4, opset 9): all 194 initializers are also graph inputs."""
    source = pretrained_path("centerface")
    assert _real_inputs(source) == ["input.1"]
    assert len(onnx.load(str(source)).graph.input) > 100  # the weights are listed as inputs there
    passes = apply_passes(source, PassConfig(), out=tmp_path / "passes.onnx")
    level = ort_optimize(source, "extended", out=tmp_path / "ort.onnx")
    dynamic = quantize_dynamic(source, out=tmp_path / "int8.onnx")
    for variant in (passes, level, dynamic):
        assert _real_inputs(variant.path) == ["input.1"], variant.name
        assert [i.name for i in onnx.load(str(variant.path)).graph.input] == ["input.1"], variant.name


def test_graph_optimization_keeps_the_inputs_an_if_subgraph_uses(tmp_path):
    """Silero VAD: its weights and its sample-rate input are used inside ``If`` branches only."""
    source = pretrained_path("silero-vad")
    with OnnxRuntimeEngine(source) as engine:
        ds = load_data(None, engine, input_shapes={"input": [1, 512]}, value_ranges={"sr": [16000, 16000]},
                       samples=4)
        feeds = ds.batches(1)[0]
        want = engine.predict(feeds)
    for variant in (apply_passes(source, PassConfig(), out=tmp_path / "p.onnx", feeds=feeds),
                    ort_optimize(source, "extended", out=tmp_path / "o.onnx", feeds=feeds)):
        assert sorted(_real_inputs(variant.path)) == ["input", "sr", "state"]
        with OnnxRuntimeEngine(variant) as optimized:
            report = compare(want, optimized.predict(feeds), scores=False)
        assert report.ok, report.reason


def test_a_collapsed_score_slice_fails_the_gate_while_the_whole_tensor_looks_fine():
    """YOLOv8n (NudeNet): one output mixes box coordinates (0-320) and 18 class scores (0-1)."""
    source = pretrained_path("nudenet-320n")
    with OnnxRuntimeEngine(source) as engine:
        ds = load_data(None, engine, input_shapes={"images": [1, 3, 320, 320]}, samples=1)
        want = engine.predict(ds.batches(1)[0])
    broken = {k: v.copy() for k, v in want.items()}
    broken["output0"][:, 4:, :] = 0.0  # every class score gone, as a single int8 scale for the tensor does
    flat = lambda d: d["output0"].ravel()  # noqa: E731
    cosine = float(flat(want) @ flat(broken) / np.linalg.norm(flat(want)) / np.linalg.norm(flat(broken)))
    assert cosine > 0.99  # what a whole-tensor check sees
    parts = {"output0": {"boxes": Slice(1, 0, 4), "scores": Slice(1, 4, None, scores=True)}}
    report = compare(want, broken, slices=parts, scores=False)
    assert not report.ok and "scores" in report.reason, report.reason
    assert compare(want, want, slices={"output0": {"scores": Slice(1, 4, None, scores=True)}}, scores=False).ok


def test_float16_of_a_model_whose_work_sits_in_if_branches_is_refused_in_one_line(tmp_path):
    """Silero VAD: a plain float16 conversion fails on its Casts (a type mismatch on each Cast's output).

    The kit keeps Cast nodes (and each op type a failed load names) in float32; here that leaves ``If``,
    which holds all the weights, in float32 too, so nothing would be float16: refused, saying what was kept.
    """
    from kit.errors import QuantizationError
    from kit.optimize.float16 import to_float16

    source = pretrained_path("silero-vad")
    with OnnxRuntimeEngine(source) as engine:
        ds = load_data(None, engine, input_shapes={"input": [1, 512]}, value_ranges={"sr": [16000, 16000]},
                       samples=2)
    with pytest.raises(QuantizationError, match=r"nothing in silero_vad was converted to float16: .*'Cast'") as info:
        to_float16(source, out=tmp_path / "fp16.onnx", feeds=ds.batches(1)[0])
    assert "\n" not in str(info.value) and not (tmp_path / "fp16.onnx").exists()

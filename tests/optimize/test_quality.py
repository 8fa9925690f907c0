"""kit.optimize.quality: per-output and per-slice judgement that sees what whole-tensor cosine hides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.errors import ConfigError
from kit.optimize.quality import EQUIVALENT, Gate, Slice, compare, top1_accuracy


def _detector(rng, batch=2, anchors=50, classes=3):
    """A YOLO-style head ``[batch, 4 + classes, anchors]``: boxes in 0..320, class scores in 0..1."""
    boxes = rng.uniform(0, 320, (batch, 4, anchors))
    scores = rng.uniform(0, 1, (batch, classes, anchors))
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


def test_collapsed_scores_fail_although_whole_tensor_cosine_is_high():
    rng = np.random.default_rng(0)
    ref = _detector(rng)
    got = ref.copy()
    got[:, :4] += rng.normal(0, 0.5, got[:, :4].shape).astype(np.float32)  # boxes: fine
    got[:, 4:] = 0.0  # one int8 scale of 1.26 for the whole tensor: every score is exactly 0
    whole = compare({"output0": ref}, {"output0": got})
    assert whole.ok and whole.parts[0].cosine > 0.999  # what the old check saw
    report = compare({"output0": ref}, {"output0": got}, slices={"output0": {"boxes": (1, 0, 4),
                                                                            "scores": (1, 4, None, "scores")}})
    assert not report.ok and "output0[scores]" in report.reason and "collapsed" in report.reason
    by_part = {p.label: p for p in report.parts}
    assert by_part["output0"].cosine > 0.999 and by_part["output0[boxes]"].ok
    scores = by_part["output0[scores]"]
    assert scores.collapsed and scores.rel_error > 0.9 and scores.topk_agreement is not None
    assert report.worst is scores
    frame = report.to_frame()
    assert list(frame["slice"]) == ["", "boxes", "scores"] and list(frame["ok"]) == [True, True, False]


def test_nan_and_inf_fail_and_matching_reference_nan_does_not():
    ref = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    got = ref.copy()
    got[1, 2] = np.nan
    report = compare({"y": ref}, {"y": got})
    assert not report.ok and report.parts[0].nonfinite == 1 and "NaN/inf" in report.reason
    got[1, 2] = np.inf
    assert not compare({"y": ref}, {"y": got}).ok
    ref_nan = ref.copy()
    ref_nan[0, 0] = np.nan
    same = ref_nan.copy()
    assert compare({"y": ref_nan}, {"y": same}).ok


def test_relative_error_is_judged_on_each_outputs_own_range():
    rng = np.random.default_rng(1)
    big, small = rng.uniform(0, 1000, (4, 8)), rng.uniform(0, 0.01, (4, 8))
    reference = {"big": big, "small": small}
    candidate = {"big": big + 1.0, "small": small + 0.005}  # 0.1 % and ~50 % of their ranges
    report = compare(reference, candidate, scores=False)
    assert not report.ok and report.reason.startswith("small:")
    assert {p.output: p.ok for p in report.parts} == {"big": True, "small": False}


def test_state_output_with_low_cosine_fails_the_default_gate():
    rng = np.random.default_rng(2)
    state = rng.standard_normal((2, 1, 128))
    report = compare({"state": state}, {"state": rng.standard_normal((2, 1, 128))})
    assert not report.ok and abs(report.parts[0].cosine) < 0.5


def test_topk_agreement_and_optional_floors():
    ref = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    got = np.array([[0.1, 0.65, 0.25], [0.39, 0.41, 0.2], [0.2, 0.2, 0.6]])  # row 1's argmax flips
    report = compare({"p": ref}, {"p": got})
    assert report.ok and report.parts[0].topk_agreement == pytest.approx(2 / 3)
    assert compare({"p": ref}, {"p": got}, top_k=2).parts[0].topk_agreement == pytest.approx(1.0)
    strict = compare({"p": ref}, {"p": got}, gate=Gate(min_topk_agreement=0.9, min_cosine=0.99))
    assert not strict.ok and "top-1 agreement 0.667" in strict.reason and "cosine" in strict.reason


def test_equivalent_gate_and_elementwise_tolerance():
    ref = {"y": np.arange(10, dtype=np.float32)}
    assert compare(ref, {"y": ref["y"] + 1e-5}, gate=EQUIVALENT).ok
    assert not compare(ref, {"y": ref["y"] + 0.1}, gate=EQUIVALENT).ok
    assert not compare(ref, {"y": ref["y"] + 1e-3}, gate=Gate(atol=1e-5)).ok
    flat = {"y": np.full(10, 1e-5) + np.linspace(0, 8e-6, 10)}  # a nearly constant map: rounding is all of its range
    assert compare(flat, {"y": flat["y"] + 1.5e-7}, gate=EQUIVALENT).ok
    assert not compare(flat, {"y": flat["y"] + 1.5e-7}, gate=Gate(max_rel_error=1e-3)).ok


def test_missing_output_wrong_shape_and_integer_outputs():
    ref = {"a": np.zeros((2, 3)), "ids": np.array([1, 2, 3], np.int64)}
    report = compare(ref, {"a": np.zeros((2, 4)), "ids": np.array([1, 2, 3], np.int64)})
    assert not report.ok and "shape" in report.reason
    assert not compare(ref, {"ids": ref["ids"]}).ok
    extra = compare({"ids": ref["ids"]}, ref)
    assert not extra.ok and "a: not an output of the reference" in extra.reason
    assert compare({"ids": ref["ids"]}, {"ids": ref["ids"]}).ok
    assert not compare({"ids": ref["ids"]}, {"ids": np.array([1, 2, 9], np.int64)}).ok


def test_user_metric_is_reported_and_gated():
    labels = np.array([1, 0, 2])
    ref = {"p": np.eye(3)[[1, 0, 2]]}
    worse = {"p": np.eye(3)[[1, 0, 0]] * 0.9 + 0.05}
    report = compare(ref, worse, labels=labels, metric=top1_accuracy(), gate=Gate(max_rel_error=10,
                                                                                  accuracy_budget=10.0))
    assert report.metric == pytest.approx(2 / 3) and report.metric_reference == 1.0
    assert not report.ok and report.reason.startswith("metric 0.6667 vs reference 1: 33.3 points lost, budget 10")
    lower = compare(ref, ref, metric=lambda r, c, _: 0.5, higher_is_better=False, gate=Gate(accuracy_budget=0.0))
    assert lower.ok and lower.summary()["metric"] == 0.5


def test_bad_slices_and_gates_are_config_errors():
    ref = {"y": np.zeros((2, 5))}
    with pytest.raises(ConfigError, match="does not have"):
        compare(ref, ref, slices={"z": {"s": (1, 0, 2)}})
    with pytest.raises(ConfigError, match="out of range"):
        compare(ref, ref, slices={"y": {"s": (1, 3, 9)}})
    with pytest.raises(ConfigError, match="axis"):
        compare(ref, ref, slices={"y": {"s": (4, 0, 1)}})
    with pytest.raises(ConfigError, match="tuple"):
        Slice.of("1:4")
    assert Slice.of([1, 4, None, "scores"]) == Slice(1, 4, None, scores=True)
    with pytest.raises(ConfigError, match="'scores' or 'values'"):
        Slice.of((1, 4, None, "probs"))
    with pytest.raises(ConfigError):
        Gate(max_rel_error=0)
    with pytest.raises(ConfigError):
        Gate(min_cosine=math.nan)
    with pytest.raises(ConfigError):
        Gate(ignore_below=-1)
    with pytest.raises(ConfigError):
        compare(ref, ref, top_k=0)


def test_summary_is_flat_figures():
    ref = {"y": np.linspace(0, 1, 8)}
    summary = compare(ref, {"y": ref["y"] * 1.01}).summary()
    assert summary["quality_ok"] and summary["worst_rel_error"] == pytest.approx(0.01)
    assert summary["min_cosine"] > 0.999 and "within the gate" in summary["quality"]
    assert summary["max_abs_error"] == pytest.approx(0.01)


def test_a_mask_leaves_padded_rows_out_of_parts_and_slices():
    rng = np.random.default_rng(1)
    ref = rng.random((3, 5, 4))
    keep = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]])
    got = np.where(keep[..., None] == 1, ref, 100.0)
    assert not compare({"h": ref}, {"h": got}).ok
    report = compare({"h": ref}, {"h": got}, masks={"h": keep}, scores=True,
                     slices={"h": {"first": (1, 0, 2), "feat": (-1, 0, 2, "scores")}})
    assert report.ok, report.reason
    whole, first, feat = report.parts
    assert whole.masked == 8 and whole.topk_agreement == 1.0 and whole.shape == (3, 5, 4)
    assert first.masked == 1 and feat.masked == 8 and feat.topk_agreement == 1.0
    assert not compare({"h": ref}, {"h": got}, masks={"h": np.zeros((3, 5))}).ok  # nothing left: never passes
    with pytest.raises(ConfigError, match="leading axes"):
        compare({"h": ref}, {"h": got}, masks={"h": keep.T})
    with pytest.raises(ConfigError, match=r"output\(s\) \['x'\]"):
        compare({"h": ref}, {"h": got}, masks={"x": keep})

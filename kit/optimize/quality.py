"""The one way the kit compares a model's outputs with a reference's: per output, per slice, gated.

Whole-tensor cosine hides what optimizations break. A detector output that mixes box
coordinates (0-320) and class scores (0-1) kept cosine 0.9996 after static int8 gave it
one scale and every score became exactly 0; a segmentation output at cosine 0.80 and
recurrent-state outputs at cosine ~0 passed a budget meant for accuracy (DESIGN.md §7).
So :func:`compare` judges each output, and each slice the user names
(``slices={"output0": {"scores": (1, 4, None)}}``), on its own terms: max error relative
to the reference's own range, cosine, top-k agreement where values are scores, NaN/inf,
and a "collapsed" detector (the reference varies, the candidate is constant). The worst
part decides; the verdict comes with a one-line reason and ``to_frame()`` for a table.

A transformer's per-token output (``last_hidden_state[batch, seq, hidden]``) holds rows for
padded positions too: nothing downstream reads them (pooling and attention mask them out), and
quantization moves them far more than the real tokens, so judged whole they fail a variant
whose sentence embedding keeps cosine 0.998. ``masks`` names, per output, which leading
positions are real (the attention mask): only those are compared, and the real ones still count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kit.errors import ConfigError

Outputs = Mapping[str, np.ndarray]
Masks = Mapping[str, np.ndarray]
"""Output name -> boolean array over its leading axes (``[batch, seq]``): True where a position is real."""
Metric = Callable[[Outputs, Outputs, "np.ndarray | None"], float]
COLLAPSE_RATIO = 1e-6  # a candidate whose range is below this fraction of the reference's is constant


@dataclass(frozen=True)
class Slice:
    """``start:stop`` along ``axis`` of one output; ``scores`` adds top-k agreement along that axis.

    A plain tuple ``(axis, start, stop)`` or ``(axis, start, stop, "scores")`` is accepted
    wherever a ``Slice`` is.
    """

    axis: int
    start: int = 0
    stop: int | None = None
    scores: bool = False

    def __post_init__(self) -> None:
        for name in ("axis", "start"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ConfigError(f"Slice.{name} must be an int, got {getattr(self, name)!r}")
        if self.stop is not None and (not isinstance(self.stop, int) or isinstance(self.stop, bool)):
            raise ConfigError(f"Slice.stop must be an int or None, got {self.stop!r}")

    @classmethod
    def of(cls, value: Slice | tuple | list) -> Slice:
        if isinstance(value, Slice):
            return value
        if isinstance(value, (tuple, list)) and len(value) in (3, 4):  # lists: from JSON or notebook parameters
            scores = len(value) == 4 and value[3] in ("scores", True)
            if len(value) == 4 and not scores and value[3] not in ("values", False):
                raise ConfigError(f"a slice's 4th item must be 'scores' or 'values', got {value[3]!r}")
            return cls(value[0], value[1], value[2], scores)
        raise ConfigError(f"a slice must be Slice(axis, start, stop) or a tuple (axis, start, stop[, 'scores']), "
                          f"got {value!r}")

    def take(self, array: np.ndarray, output: str) -> np.ndarray:
        if not -array.ndim <= self.axis < array.ndim:
            raise ConfigError(f"slice axis {self.axis} is out of range for output {output!r} of shape {array.shape}")
        size = array.shape[self.axis]
        stop = size if self.stop is None else self.stop
        if not (0 <= self.start < stop <= size):
            raise ConfigError(f"slice {self.start}:{self.stop} on axis {self.axis} is empty or out of range for "
                              f"output {output!r} of shape {array.shape}")
        index = [slice(None)] * array.ndim
        index[self.axis] = slice(self.start, stop)
        return array[tuple(index)]


Slices = Mapping[str, Mapping[str, Slice | tuple]]


@dataclass(frozen=True)
class Gate:
    """When a part fails. Collapsed and NaN/inf parts always fail.

    ``max_rel_error``: max abs error over the reference's own range (max - min) of that part;
    ``ignore_below``: an absolute error at or below this passes that check anyway (float
    rounding on a nearly constant output: a text detector's map on a blank image spans 8e-6);
    ``min_cosine`` / ``min_topk_agreement``: optional floors; ``atol``/``rtol``: optional
    elementwise closeness (``np.allclose``), for checks that a rewrite changed nothing;
    ``accuracy_budget``: how many percentage points the user metric (on a 0-1 scale, like
    accuracy) may lose against the reference's own score, the project's budget unit.
    """

    max_rel_error: float = 0.2
    ignore_below: float = 0.0
    min_cosine: float | None = None
    min_topk_agreement: float | None = None
    atol: float | None = None
    rtol: float = 0.0
    accuracy_budget: float | None = None

    def __post_init__(self) -> None:
        if not self.max_rel_error > 0:
            raise ConfigError(f"max_rel_error must be > 0, got {self.max_rel_error!r}")
        if not (isinstance(self.ignore_below, (int, float)) and 0 <= self.ignore_below < math.inf):
            raise ConfigError(f"ignore_below must be a finite number >= 0, got {self.ignore_below!r}")
        for name in ("min_cosine", "min_topk_agreement", "atol", "accuracy_budget"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number or None, got {value!r}")


DEFAULT_GATE = Gate()
EQUIVALENT = Gate(max_rel_error=1e-3, ignore_below=1e-5)
"""For rewrites meant to change nothing numerically (graph optimization): float rounding only."""


@dataclass(frozen=True)
class OutputQuality:
    """How one output (``slice == ""``) or one named slice of it compares with the reference."""

    output: str
    slice: str
    shape: tuple[int, ...]
    ok: bool
    reason: str
    max_abs_error: float = math.nan
    rel_error: float = math.nan
    reference_range: float = math.nan
    cosine: float = math.nan
    topk_agreement: float | None = None
    nonfinite: int = 0
    collapsed: bool = False
    masked: int = 0  # positions left out by a padding mask (their values never judged)

    @property
    def label(self) -> str:
        return f"{self.output}[{self.slice}]" if self.slice else self.output


@dataclass(frozen=True)
class QualityReport:
    """Every part's quality, the overall verdict (the worst part decides) and why, in one line."""

    parts: tuple[OutputQuality, ...]
    ok: bool
    reason: str
    metric: float | None = None
    metric_reference: float | None = None

    @property
    def worst(self) -> OutputQuality | None:
        failed = [p for p in self.parts if not p.ok]
        ranked = failed or [p for p in self.parts if not math.isnan(p.rel_error)]
        return max(ranked, key=lambda p: (p.rel_error if not math.isnan(p.rel_error) else math.inf), default=None)

    def summary(self) -> dict[str, Any]:
        """Flat figures for an artifact's metrics or a results row."""
        finite = [p for p in self.parts if not math.isnan(p.rel_error)]
        return {"quality_ok": self.ok, "quality": self.reason,
                "max_abs_error": max((p.max_abs_error for p in finite), default=math.nan),
                "worst_rel_error": max((p.rel_error for p in finite), default=math.nan),
                "min_cosine": min((p.cosine for p in finite), default=math.nan),
                **({"metric": self.metric, "metric_reference": self.metric_reference}
                   if self.metric is not None else {})}

    def to_frame(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame([{**asdict(p), "shape": str(p.shape)} for p in self.parts])


def _cosine(ref: np.ndarray, got: np.ndarray) -> float:
    norms = float(np.linalg.norm(ref) * np.linalg.norm(got))
    if norms == 0.0:
        return 1.0 if np.array_equal(ref, got) else 0.0
    return float(np.clip(ref @ got / norms, -1.0, 1.0))


def _topk(ref: np.ndarray, got: np.ndarray, axis: int, k: int) -> float | None:
    if ref.ndim == 0 or ref.shape[axis] < 2:
        return None
    ref2 = np.moveaxis(ref, axis, -1).reshape(-1, ref.shape[axis])
    got2 = np.moveaxis(got, axis, -1).reshape(-1, ref.shape[axis])
    k = min(k, ref2.shape[1])
    if k == 1:
        return float(np.mean(ref2.argmax(axis=1) == got2.argmax(axis=1)))
    top_ref = np.sort(np.argsort(-ref2, axis=1, kind="stable")[:, :k], axis=1)
    top_got = np.sort(np.argsort(-got2, axis=1, kind="stable")[:, :k], axis=1)
    return float(np.mean(np.all(top_ref == top_got, axis=1)))


def _part(output: str, name: str, ref: np.ndarray, got: np.ndarray, scores_axis: int | None, top_k: int,
          gate: Gate, keep: np.ndarray | None = None) -> OutputQuality:
    shape = tuple(ref.shape)
    if ref.shape != got.shape:
        return OutputQuality(output, name, shape, False, f"shape {tuple(got.shape)}, reference {shape}")
    masked, where = 0, ""
    if keep is not None:
        masked = int(keep.size - np.count_nonzero(keep))
        where = f" (on {keep.size - masked} of {keep.size} positions: {masked} padded ones left out)"
        if masked == keep.size:  # nothing left to judge: never a vacuous pass
            return OutputQuality(output, name, shape, False, f"the padding mask keeps no position{where}",
                                 masked=masked)
        if scores_axis is not None:  # top-k along a masked axis means nothing; the others move down
            axis = scores_axis % ref.ndim
            scores_axis = None if axis < keep.ndim else axis - keep.ndim + 1
        ref, got = ref[keep], got[keep]  # [positions kept, *rest]
    if ref.size == 0:
        return OutputQuality(output, name, shape, True, "empty", 0.0, 0.0, 0.0, 1.0)
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    ref_ok, got_ok = np.isfinite(r), np.isfinite(g)
    nonfinite = int(np.count_nonzero(ref_ok & ~got_ok))
    same_bad = ~ref_ok & ~got_ok & ((r == g) | (np.isnan(r) & np.isnan(g)))  # NaN where the reference has NaN
    nonfinite += int(np.count_nonzero(~ref_ok & ~same_bad))
    keep = ref_ok & got_ok
    r, g = r[keep], g[keep]
    max_abs = float(np.max(np.abs(r - g))) if r.size else 0.0
    ref_range = float(r.max() - r.min()) if r.size else 0.0
    scale = ref_range if ref_range > 0 else (float(np.max(np.abs(r))) if r.size and np.any(r) else 1.0)
    rel = max_abs / scale
    cosine = _cosine(r, g)
    got_range = float(g.max() - g.min()) if g.size else 0.0
    collapsed = ref_range > 0 and got_range <= COLLAPSE_RATIO * ref_range
    topk = (_topk(np.where(np.isfinite(ref), ref, 0), np.where(np.isfinite(got), got, 0), scores_axis, top_k)
            if scores_axis is not None else None)
    problems = []
    if nonfinite:
        problems.append(f"{nonfinite} NaN/inf value(s) where the reference has none")
    if collapsed:
        problems.append(f"collapsed to a constant {float(g[0]) if g.size else math.nan:.4g} "
                        f"(reference spans {r.min():.4g}..{r.max():.4g})")
    if rel > gate.max_rel_error and max_abs > gate.ignore_below:
        problems.append(f"max error {max_abs:.3g} is {100 * rel:.3g}% of its range {ref_range:.3g} "
                        f"(gate {100 * gate.max_rel_error:.3g}%)")
    if gate.min_cosine is not None and cosine < gate.min_cosine:
        problems.append(f"cosine {cosine:.4f} < {gate.min_cosine}")
    if gate.min_topk_agreement is not None and topk is not None and topk < gate.min_topk_agreement:
        problems.append(f"top-{top_k} agreement {topk:.3f} < {gate.min_topk_agreement}")
    if gate.atol is not None and not np.allclose(g, r, atol=gate.atol, rtol=gate.rtol):
        problems.append(f"max error {max_abs:.3g} beyond atol {gate.atol:g} + rtol {gate.rtol:g}")
    reason = ("; ".join(problems) or f"max error {100 * rel:.3g}% of range, cosine {cosine:.5f}") + where
    return OutputQuality(output, name, shape, not problems, reason, max_abs, rel, ref_range, cosine, topk,
                         nonfinite, collapsed, masked)


def _auto_scores(ref: np.ndarray) -> int | None:
    """Whole outputs shaped ``[batch, classes]`` are treated as scores (top-k along the last axis)."""
    return -1 if ref.ndim == 2 and ref.shape[1] > 1 else None


def _check_masks(reference: Outputs, masks: Masks | None) -> dict[str, np.ndarray]:
    """Each mask as booleans, refused unless it names an output and matches that output's leading axes."""
    unknown = sorted(set(masks or {}) - set(reference))
    if unknown:
        raise ConfigError(f"masks name output(s) {unknown} the model does not have; it has {sorted(reference)}")
    checked = {}
    for output, mask in (masks or {}).items():
        keep, shape = np.asarray(mask) != 0, np.shape(reference[output])
        if not 1 <= keep.ndim < len(shape) or keep.shape != shape[:keep.ndim]:
            raise ConfigError(f"the mask for output {output!r} has shape {keep.shape}; expected the output's leading "
                              f"axes (batch, sequence) with a feature axis after them, and {output!r} has shape "
                              f"{shape}: name only outputs with a sequence axis")
        checked[output] = keep
    return checked


def padding_masks(padding_mask: Mapping[str, Any] | None, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``compare``'s ``masks`` from a padding mask spec (mask input -> outputs) and the feeds that were run."""
    masks: dict[str, np.ndarray] = {}
    for mask_input, outputs in (padding_mask or {}).items():
        if mask_input not in feeds:
            raise ConfigError(f"padding_mask names input {mask_input!r}; the data has {sorted(feeds)}")
        masks.update(dict.fromkeys(outputs, np.asarray(feeds[mask_input]) != 0))
    return masks


def _slice_mask(keep: np.ndarray | None, part: Slice, ndim: int, output: str) -> np.ndarray | None:
    """The mask for a slice of a masked output: sliced too where the slice cuts a masked axis."""
    if keep is None:
        return None
    axis = part.axis % ndim
    return Slice(axis, part.start, part.stop).take(keep, output) if axis < keep.ndim else keep


def compare(reference: Outputs, candidate: Outputs, slices: Slices | None = None, gate: Gate | None = None,
            top_k: int = 1, scores: bool | None = None, labels: np.ndarray | None = None,
            metric: Metric | None = None, higher_is_better: bool = True,
            masks: Masks | None = None) -> QualityReport:
    """Judge ``candidate``'s outputs against ``reference``'s, output by output and slice by slice.

    ``slices`` names meaningful parts of outputs (``{"out": {"scores": Slice(1, 4, None, scores=True)}}``);
    each is judged on its own range, so a collapsed part fails even when the whole tensor
    looks fine. ``scores`` forces (True) or disables (False) top-k agreement on whole
    outputs; ``None`` treats 2-D ``[batch, classes]`` outputs as scores. ``metric(reference,
    candidate, labels)`` is the user's own figure (e.g. :func:`top1_accuracy`); it is also
    computed for the reference against itself, and ``gate.accuracy_budget`` bounds the loss
    (percentage points). ``masks`` (output -> array over its leading axes, nonzero where a
    position is real, e.g. the attention mask for ``last_hidden_state[batch, seq, hidden]``)
    compares those outputs and their slices only at real positions; ``masked`` counts the rest.
    """
    gate = gate or DEFAULT_GATE
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be an int >= 1, got {top_k!r}")
    unknown = sorted(set(slices or {}) - set(reference))
    if unknown:
        raise ConfigError(f"slices name output(s) {unknown} the model does not have; it has {sorted(reference)}")
    keeps = _check_masks(reference, masks)
    parts: list[OutputQuality] = []
    for output, ref_value in reference.items():
        ref = np.asarray(ref_value)
        if output not in candidate:
            parts.append(OutputQuality(output, "", tuple(ref.shape), False, f"missing; it has {sorted(candidate)}"))
            continue
        got = np.asarray(candidate[output])
        axis = _auto_scores(ref) if scores is None else (-1 if scores and ref.ndim else None)
        keep = keeps.get(output)
        parts.append(_part(output, "", ref, got, axis, top_k, gate, keep))
        for name, spec in (slices or {}).get(output, {}).items():
            part = Slice.of(spec)
            if ref.shape != got.shape:
                continue  # the whole output already failed on its shape
            parts.append(_part(output, name, part.take(ref, output), part.take(got, output),
                               part.axis if part.scores else None, top_k, gate,
                               _slice_mask(keep, part, ref.ndim, output)))
    for output in candidate:
        if output not in reference:
            parts.append(OutputQuality(output, "", tuple(np.shape(candidate[output])), False,
                                       f"not an output of the reference ({sorted(reference)})"))
    value = base = None
    if metric is not None:
        value, base = float(metric(reference, candidate, labels)), float(metric(reference, reference, labels))
    failed = [p for p in parts if not p.ok]
    reasons = [f"{p.label}: {p.reason}" for p in failed]
    if value is not None and gate.accuracy_budget is not None:
        points = 100.0 * ((base - value) if higher_is_better else (value - base))
        if not points <= gate.accuracy_budget:
            reasons.insert(0, f"metric {value:.4g} vs reference {base:.4g}: {points:.3g} points lost, budget "
                              f"{gate.accuracy_budget:g}")
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return QualityReport(tuple(parts), False, reasons[0] + more, value, base)
    worst = QualityReport(tuple(parts), True, "").worst
    detail = f"; worst {worst.label}: {worst.reason}" if worst is not None else ""
    return QualityReport(tuple(parts), True, f"{len(parts)} output(s)/slice(s) within the gate{detail}", value, base)


def top1_accuracy(output: str | None = None) -> Metric:
    """A metric: top-1 accuracy of ``output`` (default: the first) against ``labels`` (higher is better)."""
    def accuracy(reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> float:
        if labels is None:
            raise ConfigError("top1_accuracy needs labels")
        name = output or next(iter(candidate))
        predicted = np.asarray(candidate[name]).reshape(len(labels), -1).argmax(axis=1)
        return float(np.mean(predicted == np.asarray(labels).reshape(-1)))

    return accuracy


SYNTHETIC_HINT = "pass input_shapes or data (feeds=kit.data.load_data(data, specs, input_shapes=...) or a dict)"
"""What a failed self-check on synthetic inputs tells the user to do (DESIGN.md §7: dynamic sizes)."""


def check_inputs(data: Any, samples: int = 8) -> tuple[dict[str, np.ndarray] | None, str]:
    """Feeds for a self-check from the user's data, and one line naming them (``checked_with``).

    ``data`` is ``None`` (the caller then uses synthetic inputs), a mapping of input name to
    array (used as given), or a ``kit.data.Dataset``: its first request when the feeds vary
    in shape, else its first ``samples`` samples (one when the model has no batch axis).
    """
    if data is None:
        return None, ""
    from kit.data import Dataset

    if isinstance(data, Dataset):
        if data.requests is not None:
            return dict(data.requests[0]), f"the first request of {data.describe()}"
        from kit.specs import batch_axes

        batched = any(a is not None for a in batch_axes(data.specs).values())
        count = min(samples, len(data)) if batched else 1
        feeds = dict(data.take(range(count)).arrays or {})
        return feeds, f"the first {count} sample(s) of {data.describe()}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"check data must be a dict of input name -> array or a kit.data.Dataset, "
                          f"got {type(data).__name__}")
    feeds = {k: np.asarray(v) for k, v in data.items()}
    return feeds, "the given feeds (" + ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items()) + ")"

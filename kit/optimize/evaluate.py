"""Evaluate model variants side by side and recommend one: measured, never assumed.

``evaluate`` gives, for any set of artifacts (ONNX, TFLite, SavedModel), size on disk,
latency p50/p99 and throughput per batch size (all variants measured interleaved with
``kit.profile.compare``, so they share the machine's noise), and quality against the
float32 reference on the same inputs: accuracy where labels exist, otherwise top-1
agreement, max abs error and cosine similarity. NaN or inf in any output is a failure.

``recommend`` picks the fastest variant within an accuracy-drop budget and says why each
other one lost. Which int8 flavour is fastest depends on the CPU (on AVX512-VNNI, static
QDQ S8S8 on MobileNetV2 loses to float32 while U8S8 wins by 2x), so the pick comes from
the measurements in the frame, not from a default.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact
from kit.config import require_int, resolve
from kit.errors import ConfigError, InputError, KitError
from kit.profile.loadgen import check_run_bounds

log = logging.getLogger(__name__)

INT8_TRANSFORMS = ("quantize_dynamic", "quantize_static", "tflite_dynamic_range", "tflite_full_integer",
                   "tflite_integer_float_fallback")


@dataclass(frozen=True)
class EvalConfig:
    """What to measure: batch sizes, how long (pooled over interleaved rounds), which output.

    ``min_duration_s`` is per variant and batch size, split over ``rounds``.
    ``output`` names the output compared with the reference (default: the first).
    ``engine_options`` go to every engine (e.g. ``{"intra_op_num_threads": 2}`` for ORT).
    ``top1``: whether the output is a class score (top-1 agreement, accuracy); ``None``
    decides by shape (2-D with more than one column), ``False`` for embeddings.
    """

    batch_sizes: tuple[int, ...] = (1, 8)
    rounds: int = 5
    min_duration_s: float = 1.0
    min_queries: int = 10
    warmup: int = 3
    output: str | None = None
    quality_batch_size: int = 32
    top1: bool | None = None
    engine_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = (self.batch_sizes,) if isinstance(self.batch_sizes, int) else tuple(self.batch_sizes)
        if not sizes or not all(isinstance(b, int) and b >= 1 for b in sizes):
            raise ConfigError(f"batch_sizes must be ints >= 1, got {self.batch_sizes!r}")
        object.__setattr__(self, "batch_sizes", tuple(dict.fromkeys(sizes)))
        require_int("rounds", self.rounds)
        check_run_bounds(self.warmup, self.min_duration_s, self.min_queries, None)
        require_int("quality_batch_size", self.quality_batch_size)


def _fixed_batch(predictor) -> int | None:
    dims = {s.shape[0] for s in predictor.input_specs if s.shape and isinstance(s.shape[0], int)}
    return dims.pop() if len(dims) == 1 else None


def _rows(data: Mapping[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in data.items()}


def _take(data: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` samples, repeating them when there are fewer."""
    return {k: (v[:n] if v.shape[0] >= n else np.resize(v, (n, *v.shape[1:])).astype(v.dtype))
            for k, v in data.items()}


def run_all(predictor, data: Mapping[str, np.ndarray], output: str, batch_size: int) -> np.ndarray:
    """``output`` over every sample of ``data``, in chunks the model accepts."""
    count = next(iter(data.values())).shape[0]
    fixed = _fixed_batch(predictor)
    step = fixed or batch_size
    parts = []
    for start in range(0, count, step):
        chunk = _rows(data, start, start + step)
        got = min(step, count - start)
        if got < step and fixed:
            chunk = _take(chunk, step)
        parts.append(np.asarray(predictor.predict(chunk)[output])[:got])
    return np.concatenate(parts)


def quality(reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None = None,
            top1: bool | None = None) -> dict[str, Any]:
    """Quality of ``outputs`` against ``reference`` (and ``labels``); NaN/inf is a failure."""
    if not np.all(np.isfinite(outputs)):
        bad = int(np.size(outputs) - np.count_nonzero(np.isfinite(outputs)))
        return {"ok": False, "failure": f"non-finite outputs ({bad} NaN/inf values)"}
    ref = reference.astype(np.float64).reshape(reference.shape[0], -1)
    out = outputs.astype(np.float64).reshape(outputs.shape[0], -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = np.where(norms > 0, np.sum(ref * out, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    rec: dict[str, Any] = {"ok": True, "failure": "", "max_abs_err": float(np.max(np.abs(ref - out))),
                           "cosine": float(np.mean(cos)), "cosine_min": float(np.min(cos))}
    if top1 is None:
        top1 = reference.ndim == 2 and reference.shape[1] > 1
    if top1:
        top_ref, top_out = ref.argmax(axis=1), out.argmax(axis=1)
        rec["top1_agreement"] = float(np.mean(top_ref == top_out))
        if labels is not None:
            rec["accuracy"] = float(np.mean(top_out == np.asarray(labels).reshape(-1)))
    return rec


def _environment() -> dict[str, Any]:
    from kit.profile.sysinfo import environment

    env = environment()
    return {k: env[k] for k in ("cpu_model", "int8_flags", "fast_int8", "logical_cores", "affinity_cores")}


def evaluate(variants: Sequence[ModelArtifact], reference: ModelArtifact, data: Mapping[str, np.ndarray],
             labels: np.ndarray | None = None, config: EvalConfig | None = None, **overrides: Any):
    """One row per (variant, batch size): size, p50/p99, throughput, speed-up and quality.

    ``reference`` is the float32 model every variant is compared with (it is measured too,
    as the first row). ``data`` maps input name to samples (first axis); ``labels`` gives
    accuracy where they exist. A variant that fails to load or run is recorded with its
    reason and the others go on. The frame's ``attrs["environment"]`` holds the CPU and
    its int8 features; on a CPU without VNNI-class int8 a warning suggests reduce_range.
    """
    import pandas as pd

    from kit.engines.registry import create_engine
    from kit.profile.loadgen import LoadConfig, compare

    config = resolve(EvalConfig, config, overrides)
    data = {k: np.asarray(v) for k, v in data.items()}
    counts = {v.shape[0] if v.ndim else 0 for v in data.values()}
    if not data or counts == {0} or len(counts) != 1:
        raise InputError(f"evaluation data must map each input to the same number (>= 1) of samples, got "
                         f"{ {k: v.shape for k, v in data.items()} }")
    count = next(iter(counts))
    if labels is not None and len(labels) != count:
        raise InputError(f"labels has {len(labels)} entries for {count} samples")
    env = _environment()
    arts = [reference] + [v for v in variants if v is not reference and v.path != reference.path]
    if not env["fast_int8"] and any(a.transform in INT8_TRANSFORMS for a in arts):
        message = (f"CPU {env['cpu_model']} has no VNNI/AMX/dot-product int8 instructions: int8 variants may be "
                   f"slower than float32 here; try reduce_range=True and trust only the measurements below")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        log.warning(message)
    names = [a.name for a in arts]
    if len(set(names)) != len(names):
        raise ConfigError(f"variant names must be unique, got {names}")

    predictors: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}
    ref_out = None
    try:
        for art in arts:
            rec: dict[str, Any] = {"name": art.name, "transform": art.transform, "format": art.format,
                                   "size_mb": art.size_bytes / 2**20, "lineage": art.describe()}
            try:
                predictor = create_engine(art, **config.engine_options)
            except KitError as exc:
                if art is reference:
                    raise
                records[art.name] = {**rec, "ok": False, "failure": f"load failed: {exc}"}
                continue
            predictors[art.name] = predictor
            output = config.output or predictor.output_specs[0].name
            try:
                out = run_all(predictor, data, output, config.quality_batch_size)
            except KitError as exc:
                if art is reference:
                    raise
                records[art.name] = {**rec, "ok": False, "failure": f"run failed: {exc}"}
                continue
            if ref_out is None:
                ref_out = out
                if not np.all(np.isfinite(out)):
                    raise InputError(f"the reference {art.name} itself returns NaN/inf on these inputs")
            records[art.name] = {**rec, **quality(ref_out, out, labels, config.top1)}
        ref_acc = records[reference.name].get("accuracy")
        for rec in records.values():
            if ref_acc is not None and "accuracy" in rec:
                rec["accuracy_drop_pts"] = 100.0 * (ref_acc - rec["accuracy"])
            elif "top1_agreement" in rec:
                rec["accuracy_drop_pts"] = 100.0 * (1.0 - rec["top1_agreement"])

        rows = []
        profile_config = LoadConfig(warmup_queries=config.warmup, min_duration_s=config.min_duration_s,
                                       min_queries=config.min_queries)
        for batch in config.batch_sizes:
            feeds = _take(data, batch)
            runnable = {n: p for n, p in predictors.items()
                        if records[n].get("ok", True) and _fixed_batch(p) in (None, batch)}
            results = {r.label: r for r in compare(runnable, feeds, rounds=config.rounds, config=profile_config)}
            ref_p50 = None
            for name in names:
                rec = dict(records[name], batch_size=batch)
                result = results.get(name)
                if result is not None:
                    summary = result.summary()
                    rec.update(p50_ms=summary["p50_ms"], p99_ms=summary["p99_ms"],
                               samples_per_s=summary["samples_per_s"], queries=int(summary["queries"]))
                    if result.errors and not result.latencies_s.size:
                        rec.update(ok=False, failure=f"timing failed: {result.error_messages[:1]}")
                elif rec.get("ok", True):
                    rec.update(ok=False, failure=f"model has a fixed batch size, not {batch}")
                if name == reference.name:
                    ref_p50 = rec.get("p50_ms")
                rows.append(rec)
            for rec in rows[-len(names):]:
                p50 = rec.get("p50_ms")
                rec["speedup"] = ref_p50 / p50 if ref_p50 and p50 and math.isfinite(p50) else float("nan")
    finally:
        for predictor in predictors.values():
            predictor.close()
    columns = ["name", "transform", "format", "batch_size", "size_mb", "p50_ms", "p99_ms", "samples_per_s",
               "speedup", "accuracy", "accuracy_drop_pts", "top1_agreement", "max_abs_err", "cosine",
               "cosine_min", "ok", "failure", "queries", "lineage"]
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in columns if c in frame.columns]]
    frame.attrs["environment"] = env
    frame.attrs["reference"] = reference.name
    return frame


@dataclass(frozen=True)
class Recommendation:
    """The pick, the figures it was picked on, and one reason per variant that lost."""

    best: str
    batch_size: int
    speedup: float
    reasons: dict[str, str]
    table: Any  # pandas.DataFrame: name, verdict, reason

    def __repr__(self) -> str:  # one line: the table is ``.table``, the reasons ``str(rec)``
        return (f"Recommendation(best={self.best!r}, speedup={self.speedup:.2f}x at batch {self.batch_size}, "
                f"over {len(self.reasons)} other variants)")

    def __str__(self) -> str:
        lines = [f"recommended: {self.best} ({self.speedup:.2f}x the reference at batch {self.batch_size})"]
        lines += [f"  {name}: {why}" for name, why in self.reasons.items()]
        return "\n".join(lines)


def recommend(frame, accuracy_budget: float | None = 1.0, min_cosine: float | None = None,
              batch_size: int | None = None, metric: str = "p50_ms") -> Recommendation:
    """The fastest variant (by ``metric`` at ``batch_size``) whose quality is within budget.

    ``accuracy_budget`` is the allowed drop in accuracy points (or in top-1 agreement
    points where no labels exist); ``min_cosine`` optionally bounds cosine similarity
    (for models whose output is not a class); ``accuracy_budget=None`` gates on cosine
    alone. Failures (NaN/inf, load or run errors) never win. The reference is a candidate
    too: if nothing beats it, keep it.
    """
    if accuracy_budget is None and min_cosine is None:
        raise ConfigError("give an accuracy_budget (points), a min_cosine, or both")
    if accuracy_budget is not None and accuracy_budget < 0:
        raise ConfigError(f"accuracy_budget must be >= 0 points, got {accuracy_budget}")
    if min_cosine is not None and not -1.0 <= min_cosine <= 1.0:
        raise ConfigError(f"min_cosine must be in [-1, 1], got {min_cosine}")
    if metric not in ("p50_ms", "p99_ms"):
        raise ConfigError(f"metric must be 'p50_ms' or 'p99_ms', got {metric!r}")
    import pandas as pd

    sizes = sorted(frame["batch_size"].unique())
    batch_size = sizes[0] if batch_size is None else batch_size
    if batch_size not in sizes:
        raise ConfigError(f"batch_size {batch_size} was not measured; the frame has {sizes}")
    rows = frame[frame["batch_size"] == batch_size]
    reference = frame.attrs.get("reference", rows.iloc[0]["name"])
    reasons: dict[str, str] = {}
    candidates = []
    for _, row in rows.iterrows():
        drop = row.get("accuracy_drop_pts", float("nan"))
        cosine = row.get("cosine", float("nan"))
        if not row.get("ok", True):
            reasons[row["name"]] = f"failed: {row['failure']}"
        elif not math.isfinite(row.get(metric, float("nan"))):
            reasons[row["name"]] = "not measured at this batch size"
        elif accuracy_budget is not None and isinstance(drop, float) and math.isfinite(drop) \
                and drop > accuracy_budget:
            reasons[row["name"]] = f"accuracy drop {drop:.2f} pts exceeds the budget of {accuracy_budget:g} pts"
        elif min_cosine is not None and (not math.isfinite(cosine) or cosine < min_cosine):
            reasons[row["name"]] = f"cosine {cosine:.5f} is below the minimum {min_cosine:g}"
        else:
            candidates.append(row)
    if not candidates:
        raise ConfigError(f"no variant at batch {batch_size} is within the budget; reasons: {reasons}")
    best = min(candidates, key=lambda r: r[metric])
    for row in candidates:
        if row["name"] != best["name"]:
            ratio = row[metric] / best[metric]
            reasons[row["name"]] = (f"within budget but slower: {metric} {row[metric]:.3f} ms vs {best[metric]:.3f} ms "
                                    f"({ratio:.2f}x {best['name']})")
    ordered = {n: reasons[n] for n in rows["name"] if n in reasons}
    table = pd.DataFrame([{"name": best["name"], "verdict": "recommended",
                           "reason": f"fastest within budget: {metric} {best[metric]:.3f} ms, "
                                     f"{best['speedup']:.2f}x {reference}"}]
                         + [{"name": n, "verdict": "lost", "reason": r} for n, r in ordered.items()])
    return Recommendation(best=str(best["name"]), batch_size=int(batch_size), speedup=float(best["speedup"]),
                          reasons=ordered, table=table)


def pareto_front(frame, x: str = "p50_ms", y: str = "cosine", lower_x: bool = True, higher_y: bool = True):
    """Boolean Series: rows no other row beats on both ``x`` (latency) and ``y`` (quality)."""
    import pandas as pd

    xs = frame[x].to_numpy(dtype=float) * (1 if lower_x else -1)
    ys = frame[y].to_numpy(dtype=float) * (1 if higher_y else -1)
    ok = np.isfinite(xs) & np.isfinite(ys)
    front = []
    for i in range(len(frame)):
        beaten = ok & (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        front.append(bool(ok[i] and not beaten.any()))
    return pd.Series(front, index=frame.index, name="pareto")

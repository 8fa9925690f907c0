"""Evaluate model variants side by side and recommend one: measured, never assumed.

``evaluate`` gives, for any set of artifacts (ONNX, TFLite, SavedModel), size on disk,
latency p50/p99 and throughput per batch size (all variants measured interleaved with
``kit.profile.compare``, so they share the machine's noise, and each round's median kept),
and quality against the float32 reference on the same inputs, judged by
``kit.optimize.quality.compare``: every output (and every slice the user names) on its own
range, the worst one decides; NaN/inf or a collapsed output fails; accuracy where labels
exist, or the user's own ``metric="module:function"``. A transformer's per-token outputs are
judged at its real tokens only (``EvalConfig.padding_mask``): padded rows move a lot under
int8 yet nothing reads them, and judged whole they rejected MiniLM variants whose sentence
embedding kept cosine 0.998.

``recommend`` picks the fastest variant whose quality passed and that beats the reference
beyond the measured spread, and says why each other one lost. Which int8 flavour is
fastest depends on the CPU (on AVX512-VNNI, static QDQ S8S8 on MobileNetV2 loses to
float32 while U8S8 wins by 2x), so the pick comes from the measurements in the frame, not
from a default.
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
from kit.optimize.quality import Gate, Metric, QualityReport, Slices, compare, top1_accuracy
from kit.optimize.samples import fixed_batch, input_axes, run_outputs, sample_counts, take_samples
from kit.profile.figures import ratio_rounds
from kit.profile.scenarios import check_run_bounds

log = logging.getLogger(__name__)

INT8_TRANSFORMS = ("quantize_dynamic", "quantize_static", "tflite_dynamic_range", "tflite_full_integer",
                   "tflite_integer_float_fallback")


@dataclass(frozen=True)
class EvalConfig:
    """What to measure: batch sizes, how long (pooled over interleaved rounds), which output.

    ``min_duration_s`` is per variant and batch size, split over ``rounds``.
    ``output`` names the output accuracy (top-1 against labels) is read from (default: the
    first); every output is compared with the reference.
    ``engine_options`` go to every engine (e.g. ``{"intra_op_num_threads": 2}`` for ORT).
    ``top1``: whether outputs are class scores (top-1 agreement, accuracy); ``None``
    decides by shape (2-D with more than one column), ``False`` for embeddings.
    ``memory``: also measure each variant's peak resident memory and load time, each alone in
    a child process (``kit.profile.memory``), answering ``memory_requests`` requests at the
    largest batch size, one child at a time (two at once made each load time include the other's
    work); off by default since every variant costs a fresh process (~1-2 s). ``memory_rounds``
    children per variant, interleaved (A B C A B C): ``peak_mem_mb`` and ``load_s`` are their
    medians and ``peak_mem_mb_low``/``peak_mem_mb_high`` their min–max, since a peak resident
    size moves a little from one process to the next.
    ``padding_mask``: mask input -> the outputs with a sequence axis it masks, e.g.
    ``{"attention_mask": ["last_hidden_state"]}``: those outputs are compared with the reference
    only where the mask is nonzero (real tokens), since padded positions are read by nothing and
    move a lot under quantization; they still appear, and the real positions still decide.
    ``fresh_sessions``: each timing round after the first runs on a newly loaded engine of each
    variant (``kit.profile.loadgen.compare``'s ``fresh``), so a figure's spread includes how much
    one session differs from the next (MiniLM: 17.9 to 31.4 ms by session in one run of
    ``benchmarks/bench_sessions.py``); ``False`` times one
    session per variant throughout.
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
    memory: bool = False  # peak memory and load time per variant, each in its own child process (~1-2 s each)
    memory_requests: int = 10  # requests each memory child answers after its first
    memory_rounds: int = 4  # memory children per variant, interleaved; their range is the figure's spread
    padding_mask: Mapping[str, Sequence[str]] = field(default_factory=dict)  # mask input -> outputs [batch, seq, ...]
    fresh_sessions: bool = True  # each timing round after the first on a new session of each variant

    def __post_init__(self) -> None:
        sizes = (self.batch_sizes,) if isinstance(self.batch_sizes, int) else tuple(self.batch_sizes)
        if not sizes or not all(isinstance(b, int) and b >= 1 for b in sizes):
            raise ConfigError(f"batch_sizes must be ints >= 1, got {self.batch_sizes!r}")
        object.__setattr__(self, "batch_sizes", tuple(dict.fromkeys(sizes)))
        require_int("rounds", self.rounds)
        check_run_bounds(self.warmup, self.min_duration_s, self.min_queries, None)
        require_int("quality_batch_size", self.quality_batch_size)
        require_int("memory_requests", self.memory_requests, 0)
        require_int("memory_rounds", self.memory_rounds)
        object.__setattr__(self, "padding_mask", check_padding_mask(self.padding_mask))


def check_padding_mask(value: Any) -> dict[str, tuple[str, ...]]:
    """``{mask input: [outputs]}`` as a dict of tuples; a bare output name stands for a list of one."""
    example = '{"attention_mask": ["last_hidden_state"]}'
    if not isinstance(value, Mapping):
        raise ConfigError(f"padding_mask must map a mask input to the outputs it masks, e.g. {example}, got {value!r}")
    masks: dict[str, tuple[str, ...]] = {}
    for mask, outputs in value.items():
        outputs = (outputs,) if isinstance(outputs, str) else outputs
        if not isinstance(mask, str) or not mask or not isinstance(outputs, Sequence) or not outputs \
                or not all(isinstance(o, str) and o for o in outputs):
            raise ConfigError(f"padding_mask must map a mask input name to a non-empty list of output names, e.g. "
                              f"{example}, got {mask!r}: {outputs!r}")
        masks[mask] = tuple(dict.fromkeys(outputs))
    named = [o for outputs in masks.values() for o in outputs]
    twice = sorted({o for o in named if named.count(o) > 1})
    if twice:
        raise ConfigError(f"padding_mask names output(s) {twice} under more than one mask input; each output has one")
    return masks


def _padding_masks(config: EvalConfig, predictor: Any, data: Mapping[str, np.ndarray],
                   axes: Mapping[str, int | None]) -> dict[str, np.ndarray]:
    """Output -> its mask over all evaluation samples (samples first), from ``config.padding_mask``.

    Checked against the reference model before anything runs: a mask input or an output it does
    not have is a ``ConfigError`` naming what it has; a mask with no real position an ``InputError``.
    """
    if not config.padding_mask:
        return {}
    inputs = [s.name for s in predictor.input_specs]
    outputs = [s.name for s in predictor.output_specs]
    missing = sorted(set(config.padding_mask) - set(inputs))
    if missing:
        raise ConfigError(f"padding_mask names mask input(s) {missing}, expected an input of the model that is 1 at "
                          f"real tokens and 0 at padding; the model's inputs are {inputs}")
    unknown = sorted({o for names in config.padding_mask.values() for o in names} - set(outputs))
    if unknown:
        raise ConfigError(f"padding_mask names output(s) {unknown}, expected outputs with a sequence axis "
                          f"([batch, seq, ...]); the model's outputs are {outputs}")
    masks = {}
    for name, names in config.padding_mask.items():
        mask = np.asarray(data[name])
        mask = np.moveaxis(mask, axes.get(name) or 0, 0) if mask.ndim else mask
        if not np.any(mask):
            raise InputError(f"the padding mask {name!r} is 0 everywhere in the evaluation data: no real position "
                             f"to compare")
        masks.update(dict.fromkeys(names, mask))
    return masks


def load_metric(metric: str | Metric | None) -> Metric | None:
    """A user metric: a callable, or ``"module:function"`` naming one (reference, candidate, labels -> number)."""
    if metric is None or callable(metric):
        return metric
    if not isinstance(metric, str) or ":" not in metric:
        raise ConfigError(f"metric must be a callable or 'module:function', got {metric!r}")
    import importlib

    module, _, function = metric.partition(":")
    try:
        fn = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import metric {metric!r}: {exc}; expected 'module:function' taking "
                          f"(reference outputs, candidate outputs, labels) and returning a number") from exc
    if not callable(fn):
        raise ConfigError(f"metric {metric!r} is not callable")
    return fn


def _quality_columns(report: QualityReport, top1: bool, higher_is_better: bool,
                     user_metric: bool) -> dict[str, Any]:
    """The frame's quality columns from one comparison: overall, per output/slice, and the metric."""
    finite = [p for p in report.parts if not math.isnan(p.rel_error)]
    rec: dict[str, Any] = {
        "quality_ok": report.ok, "quality_reason": report.reason,
        "quality": "; ".join(f"{p.label}: {'ok' if p.ok else 'FAIL'} {100 * p.rel_error:.3g}% cos {p.cosine:.5f}"
                             + (f" ({p.masked} padded positions left out)" if p.masked else "")
                             for p in report.parts),
        "worst_output": report.worst.label if report.worst is not None else "",
        "worst_rel_error": max((p.rel_error for p in finite), default=math.nan),
        "max_abs_err": max((p.max_abs_error for p in finite), default=math.nan),
        "cosine": min((p.cosine for p in finite), default=math.nan),
        **{f"rel_error[{p.label}]": p.rel_error for p in report.parts},
        **{f"cosine[{p.label}]": p.cosine for p in report.parts}}
    rec["cosine_min"] = rec["cosine"]
    topk = [p.topk_agreement for p in report.parts if p.topk_agreement is not None]
    if top1 and topk:
        rec["top1_agreement"] = min(topk)
    if report.metric is not None:
        drop = (report.metric_reference - report.metric) if higher_is_better else (report.metric -
                                                                                   report.metric_reference)
        if user_metric:
            rec.update(metric=report.metric, metric_reference=report.metric_reference, metric_drop_pts=100.0 * drop)
        else:
            rec["accuracy"] = report.metric
        rec["accuracy_drop_pts"] = 100.0 * drop
    elif "top1_agreement" in rec:
        rec["accuracy_drop_pts"] = 100.0 * (1.0 - rec["top1_agreement"])
    return rec


def _speed_columns(result) -> dict[str, Any]:
    """p50/p99/throughput of one ``LoadResult`` and its rounds' medians (the noise ``recommend`` respects)."""
    summary = result.summary()
    rounds = [float(x) for x in result.round_p50s_ms()]
    return {"p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"], "samples_per_s": summary["samples_per_s"],
            "queries": int(summary["queries"]), "round_p50s_ms": rounds, "rounds": len(rounds),
            "p50_spread_ms": (max(rounds) - min(rounds)) if len(rounds) > 1 else math.nan,
            "p50_low_ms": min(rounds) if len(rounds) > 1 else math.nan,
            "p50_high_ms": max(rounds) if len(rounds) > 1 else math.nan}


def _memory_columns(arts: Sequence[ModelArtifact], feeds: Mapping[str, Mapping[str, np.ndarray]],
                    config: EvalConfig) -> dict[str, dict[str, Any]]:
    """Per variant: ``peak_mem_mb`` (above the child's baseline, median over ``config.memory_rounds``
    children, with its min–max) and ``load_s``; each child measures one variant alone, interleaved."""
    from kit.profile.memory import measure_memory

    results: dict[str, list[Any]] = {a.name: [] for a in arts}
    failed: dict[str, str] = {}
    for _ in range(config.memory_rounds):
        for art in arts:
            if art.name in failed:
                continue
            try:
                results[art.name].append(measure_memory(art, feeds[art.name], config.memory_requests,
                                                        **config.engine_options))
            except KitError as exc:
                failed[art.name] = str(exc)
                message = f"memory of {art.name} not measured: {exc}"
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                log.warning(message)
    out = {}
    for art in arts:
        if art.name in failed:
            out[art.name] = {"peak_mem_mb": math.nan, "peak_mem_mb_low": math.nan, "peak_mem_mb_high": math.nan,
                             "load_s": math.nan, "memory_rounds": 0, "memory": {"failure": failed[art.name]}}
            continue
        done = results[art.name]  # memory_rounds >= 1 children, none failed
        peaks = [r.peak_mb for r in done]
        out[art.name] = {"peak_mem_mb": float(np.median(peaks)), "peak_mem_mb_low": min(peaks),
                         "peak_mem_mb_high": max(peaks), "load_s": float(np.median([r.load_s for r in done])),
                         "memory_rounds": len(done), "memory": done[0].to_record()}
    return out


def _environment() -> dict[str, Any]:
    from kit.profile.sysinfo import environment

    env = environment()
    return {k: env[k] for k in ("cpu_model", "int8_flags", "fast_int8", "logical_cores", "affinity_cores")}


def _as_feeds(data: Any, labels: Any) -> tuple[dict[str, np.ndarray], Any, str, dict[str, int | None]]:
    """Evaluation feeds, labels, their description and sample axes from a mapping or a ``kit.data.Dataset``.

    A Dataset's samples lie along its specs' sample axes (a recurrent state's batch axis is 1, a
    sample rate is shared); a plain mapping's along axis 0.
    """
    from kit.data import Dataset, sample_axes

    if isinstance(data, Dataset):
        if data.arrays is None:
            raise ConfigError(f"evaluate needs feeds of one shape; {data.source} holds requests of varying shape: "
                              f"pick one shape (Dataset.take) or pass input_shapes")
        arrays = dict(data.arrays)
        axes = sample_axes(data.specs)
        return arrays, data.labels if labels is None else labels, data.describe(), input_axes(arrays, axes)
    feeds = {k: np.asarray(v) for k, v in data.items()}
    described = "the given feeds (" + ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items()) + ")"
    return feeds, labels, described, input_axes(feeds, None)


def evaluate(variants: Sequence[ModelArtifact], reference: ModelArtifact, data: Any,
             labels: np.ndarray | None = None, config: EvalConfig | None = None, *,
             slices: Slices | None = None, gate: Gate | None = None, metric: str | Metric | None = None,
             higher_is_better: bool = True, **overrides: Any):
    """One row per (variant, batch size): size, p50/p99, throughput, speed-up and quality.

    ``reference`` is the float32 model every variant is compared with (it is measured too,
    as the first row). ``data`` maps input name to samples (first axis), or is a
    ``kit.data.Dataset`` (``kit.data.load_data`` / ``kit.models.model_data``), whose labels
    are used when ``labels`` is not given; the frame's ``checked_with`` column (and
    ``attrs["data"]``) says which data it was. Quality is ``kit.optimize.quality.compare``
    of every output (and every slice in ``slices``) under ``gate`` (default
    ``quality.Gate()``; collapsed or NaN/inf outputs always fail): ``quality_ok``,
    ``quality_reason``, a compact ``quality`` summary, ``rel_error[<output>]`` and
    ``cosine[<output>]`` per output and slice (outputs in ``config.padding_mask`` at real
    tokens only); ``attrs["quality"]`` holds each variant's
    full table as records (``pd.DataFrame(frame.attrs["quality"][name])``). With
    ``labels``, ``accuracy`` is top-1 accuracy of ``config.output``;
    ``metric`` (a callable or ``"module:function"`` taking reference outputs, candidate
    outputs and labels, returning a number; ``higher_is_better``) replaces it, in the
    ``metric``/``metric_reference``/``metric_drop_pts`` columns. A variant whose own check
    failed (``artifact.metrics["quality_ok"] is False``) is marked failed too. A variant
    that fails to load or run is recorded with its reason and the others go on. The
    frame's ``attrs["environment"]`` holds the CPU and its int8 features; on a CPU without
    VNNI-class int8 a warning suggests reduce_range. With ``config.memory``, ``peak_mem_mb``
    (peak resident memory above the child's baseline after imports, MB) and ``load_s``
    (engine creation, s) come from ``kit.profile.memory.measure_memory``, and
    ``attrs["memory"]`` holds every stage (load, first inference, steady state) per variant.

    Spread: ``round_p50s_ms`` holds each interleaved round's median, ``p50_low_ms``/``p50_high_ms``
    their min–max over ``rounds``; ``speedup_low``/``speedup_high`` the min–max of the per-round
    speed-ups (reference round median over the variant's, paired because the rounds interleave).
    ``kit.Figure.from_rounds`` turns either into a publishable figure.
    """
    import pandas as pd

    from kit.engines.registry import create_engine
    from kit.profile.loadgen import compare as compare_speed
    from kit.profile.scenarios import LoadConfig

    config = resolve(EvalConfig, config, overrides)
    data, labels, described, axes = _as_feeds(data, labels)
    counts = sample_counts(data, axes)
    if not data or not counts or counts == {0} or len(counts) != 1:
        raise InputError(f"evaluation data must map each input to the same number (>= 1) of samples, got "
                         f"{ {k: v.shape for k, v in data.items()} }")
    count = next(iter(counts))
    if labels is not None and len(labels) != count:
        raise InputError(f"labels has {len(labels)} entries for {count} samples")
    user_metric = load_metric(metric)
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
    tables: dict[str, Any] = {}
    ref_out = None
    masks: dict[str, np.ndarray] = {}  # output -> real positions, from the reference's inputs
    memory_batch: dict[str, int] = {}
    try:
        for art in arts:
            rec: dict[str, Any] = {"name": art.name, "transform": art.transform, "format": art.format,
                                   "size_mb": art.size_bytes / 2**20, "lineage": art.describe(),
                                   "checked_with": described, "ok": True, "failure": ""}
            try:
                predictor = create_engine(art, **config.engine_options)
            except KitError as exc:
                if art is reference:
                    raise
                records[art.name] = {**rec, "ok": False, "failure": f"load failed: {exc}", "quality_ok": False,
                                     "quality_reason": "not compared: it does not load"}
                continue
            predictors[art.name] = predictor
            if art is reference:
                masks = _padding_masks(config, predictor, data, axes)
            memory_batch[art.name] = fixed_batch(predictor) or max(config.batch_sizes)
            try:
                out = run_outputs(predictor, data, config.quality_batch_size, axes)
            except KitError as exc:
                if art is reference:
                    raise
                records[art.name] = {**rec, "ok": False, "failure": f"run failed: {exc}", "quality_ok": False,
                                     "quality_reason": "not compared: it does not run"}
                continue
            if ref_out is None:
                ref_out = out
                bad = [k for k, v in out.items() if np.asarray(v).dtype.kind in "fc" and not np.all(np.isfinite(v))]
                if bad:
                    raise InputError(f"the reference {art.name} itself returns NaN/inf in {bad} on {described}")
            output = config.output or predictor.output_specs[0].name
            fn = user_metric or (top1_accuracy(output) if labels is not None and config.top1 is not False else None)
            report = compare(ref_out, out, slices=slices, gate=gate, scores=config.top1, labels=labels, metric=fn,
                             higher_is_better=higher_is_better if user_metric else True, masks=masks)
            tables[art.name] = report.to_frame().to_dict("records")  # plain data: pandas compares attrs
            top1 = config.top1 if config.top1 is not None else any(p.topk_agreement is not None for p in report.parts)
            rec.update(_quality_columns(report, top1, higher_is_better, user_metric is not None))
            own = art.metrics.get("quality_ok")
            if own is False and art is not reference:
                mine = "" if report.ok else f"{report.reason}; "
                rec.update(quality_ok=False, quality_reason=f"{mine}its own check failed: "
                                                            f"{art.metrics.get('quality', 'quality_ok is False')}")
            records[art.name] = rec
        if config.memory:  # one child at a time, so each load time is that model's alone
            measured = [a for a in arts if records[a.name].get("ok", True)]
            memory_feeds = {a.name: take_samples(data, memory_batch[a.name], axes) for a in measured}
            for name, columns in _memory_columns(measured, memory_feeds, config).items():
                records[name].update(columns)

        rows = []
        by_name = {a.name: a for a in arts}
        profile_config = LoadConfig(warmup_queries=config.warmup, min_duration_s=config.min_duration_s,
                                    min_queries=config.min_queries)
        for batch in config.batch_sizes:
            feeds = take_samples(data, batch, axes)
            runnable = {n: p for n, p in predictors.items()
                        if records[n].get("ok", True) and fixed_batch(p) in (None, batch)}
            fresh = {n: (lambda a=by_name[n]: create_engine(a, **config.engine_options)) for n in runnable} \
                if config.fresh_sessions else None
            results = {r.label: r for r in compare_speed(runnable, feeds, rounds=config.rounds,
                                                         config=profile_config, fresh=fresh)}
            ref_p50 = None
            for name in names:
                rec = dict(records[name], batch_size=batch)
                result = results.get(name)
                if result is not None:
                    rec.update(_speed_columns(result))
                    if result.errors and not result.latencies_s.size:
                        rec.update(ok=False, failure=f"timing failed: {result.error_messages[:1]}")
                elif rec.get("ok", True):
                    rec.update(ok=False, failure=f"model has a fixed batch size, not {batch}")
                if name == reference.name:
                    ref_p50 = rec.get("p50_ms")
                rows.append(rec)
            ref_rounds = next((r.get("round_p50s_ms", []) for r in rows[-len(names):]
                                                if r["name"] == reference.name), [])
            for rec in rows[-len(names):]:
                p50 = rec.get("p50_ms")
                rec["speedup"] = ref_p50 / p50 if ref_p50 and p50 and math.isfinite(p50) else float("nan")
                # rounds are interleaved (A B C A B C ...): each round's ratio is a paired speed-up
                ratios = ratio_rounds(ref_rounds, rec.get("round_p50s_ms", []))
                rec["speedup_low"] = min(ratios) if len(ratios) > 1 else float("nan")
                rec["speedup_high"] = max(ratios) if len(ratios) > 1 else float("nan")
    finally:
        for predictor in predictors.values():
            predictor.close()
    columns = ["name", "transform", "format", "batch_size", "size_mb", "p50_ms", "p99_ms", "p50_spread_ms",
               "p50_low_ms", "p50_high_ms", "rounds", "samples_per_s", "speedup", "speedup_low", "speedup_high",
               "quality_ok", "quality_reason", "quality", "worst_output",
               "worst_rel_error", "accuracy", "metric", "metric_reference", "metric_drop_pts", "accuracy_drop_pts",
               "top1_agreement", "max_abs_err", "cosine", "cosine_min", "ok", "failure", "queries",
               "round_p50s_ms", "checked_with", "lineage"]
    columns[columns.index("size_mb") + 1:columns.index("size_mb") + 1] = ["peak_mem_mb", "peak_mem_mb_low",
                                                                          "peak_mem_mb_high", "memory_rounds",
                                                                          "load_s"]
    memory = {rec["name"]: rec.pop("memory") for rec in rows if "memory" in rec}
    frame = pd.DataFrame(rows)
    per_part = [c for c in frame.columns if c.startswith(("rel_error[", "cosine["))]
    frame = frame[[c for c in columns if c in frame.columns] + per_part]
    frame.attrs["environment"] = env
    frame.attrs["reference"] = reference.name
    frame.attrs["data"] = described
    frame.attrs["quality"] = tables
    if config.memory:
        frame.attrs["memory"] = memory  # each variant's MemoryResult record: load, first, steady, peak
    return frame


@dataclass(frozen=True)
class Recommendation:
    """The pick, the figures it was picked on, and one reason per variant that lost.

    ``within_noise`` is True when a variant was faster by its median but not beyond the
    measured spread, so the reference was kept; ``verdict`` says so in words.
    """

    best: str
    batch_size: int
    speedup: float
    reasons: dict[str, str]
    table: Any  # pandas.DataFrame: name, verdict, reason
    verdict: str = ""
    within_noise: bool = False

    def __repr__(self) -> str:  # one line: the table is ``.table``, the reasons ``str(rec)``
        noise = ", difference within noise" if self.within_noise else ""
        return (f"Recommendation(best={self.best!r}, speedup={self.speedup:.2f}x at batch {self.batch_size}, "
                f"over {len(self.reasons)} other variants{noise})")

    def __str__(self) -> str:
        lines = [f"recommended: {self.best} ({self.speedup:.2f}x the reference at batch {self.batch_size})"]
        if self.verdict:
            lines.append(f"  why: {self.verdict}")
        lines += [f"  {name}: {why}" for name, why in self.reasons.items()]
        return "\n".join(lines)


def _rounds(row) -> list[float]:
    value = row.get("round_p50s_ms") if hasattr(row, "get") else None
    if value is None or isinstance(value, float):
        return []
    return [float(x) for x in value if math.isfinite(float(x))]


def beyond_noise(candidate: Sequence[float], reference: Sequence[float]) -> bool | None:
    """Whether ``candidate`` is faster than ``reference`` beyond the spread of their rounds' medians.

    The rule: the candidate's *slowest* round median must beat the reference's *fastest*
    one (the two ranges of round medians do not overlap). ``None`` when either has fewer
    than two rounds, so no spread is known.
    """
    if len(candidate) < 2 or len(reference) < 2:
        return None
    return max(candidate) < min(reference)


def _quality_failure(row) -> str | None:
    ok = row.get("quality_ok", True)
    if isinstance(ok, (bool, np.bool_)) and not ok:
        return f"quality gate failed: {row.get('quality_reason', '')}"
    return None


def recommend(frame, accuracy_budget: float | None = 1.0, min_cosine: float | None = None,
              batch_size: int | None = None, metric: str = "p50_ms") -> Recommendation:
    """The fastest variant (by ``metric`` at ``batch_size``) whose quality passed, if it beats the reference.

    A variant is a candidate when it ran, its quality gate passed (``quality_ok``, which
    includes its own check after quantization), its accuracy drop (``accuracy_drop_pts``:
    accuracy, the user metric, or else top-1 agreement, in points) is within
    ``accuracy_budget`` and its cosine is at least ``min_cosine`` when given
    (``accuracy_budget=None`` gates on cosine alone). Failures never win.

    Noise: a candidate wins over the reference only when it is faster *beyond the measured
    spread*: its slowest round median (``round_p50s_ms``, from the interleaved rounds) is
    below the reference's fastest one (:func:`beyond_noise`). Among those that do, the
    fastest by ``metric`` is picked. When none does, the reference is kept and the verdict
    says the difference was within noise. Rows without per-round figures (frames from
    older versions) are ranked by ``metric`` alone, as before.
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
        gate_failure = _quality_failure(row) if row["name"] != reference else None
        if not row.get("ok", True):
            reasons[row["name"]] = f"failed: {row['failure']}"
        elif gate_failure:
            reasons[row["name"]] = gate_failure
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
    ref_row = next((r for r in candidates if r["name"] == reference), None)
    ref_rounds = _rounds(ref_row) if ref_row is not None else []
    winners, noise = [], []
    for row in candidates:
        if ref_row is None or row["name"] == reference:
            continue
        clear = beyond_noise(_rounds(row), ref_rounds)
        if clear is None:  # no spread known: rank by the figure alone
            if row[metric] < ref_row[metric]:
                winners.append(row)
        elif clear:
            winners.append(row)
        elif row[metric] < ref_row[metric]:
            noise.append(row)
    within_noise = False
    if ref_row is None:
        best = min(candidates, key=lambda r: r[metric])
        verdict = f"fastest within budget: {metric} {best[metric]:.3f} ms"
    elif winners:
        best = min(winners, key=lambda r: r[metric])
        rounds = _rounds(best)
        spread = (f" (slowest round {max(rounds):.3f} ms < the reference's fastest {min(ref_rounds):.3f} ms)"
                  if rounds and ref_rounds else "")
        verdict = (f"fastest within budget and beyond noise: {metric} {best[metric]:.3f} ms, "
                   f"{best['speedup']:.2f}x {reference}{spread}")
    else:
        best, within_noise = ref_row, bool(noise)
        verdict = (f"kept the reference: {', '.join(str(r['name']) for r in noise)} faster by the median but the "
                   f"difference within noise (round medians overlap)" if noise
                   else "kept the reference: no variant within budget is faster")
    for row in candidates:
        if row["name"] == best["name"]:
            continue
        ratio = row[metric] / best[metric]
        if best["name"] == reference and any(row["name"] == r["name"] for r in noise):
            rounds = _rounds(row)
            reasons[row["name"]] = (f"difference within noise: {metric} {row[metric]:.3f} ms vs {best[metric]:.3f} ms"
                                    + (f", round medians {min(rounds):.3f}-{max(rounds):.3f} ms overlap the "
                                       f"reference's {min(ref_rounds):.3f}-{max(ref_rounds):.3f} ms"
                                       if rounds and ref_rounds else ""))
        else:
            reasons[row["name"]] = (f"within budget but slower: {metric} {row[metric]:.3f} ms vs "
                                    f"{best[metric]:.3f} ms ({ratio:.2f}x {best['name']})")
    ordered = {n: reasons[n] for n in rows["name"] if n in reasons}
    table = pd.DataFrame([{"name": best["name"], "verdict": "recommended", "reason": verdict}]
                         + [{"name": n, "verdict": "lost", "reason": r} for n, r in ordered.items()])
    speedup = float(best["speedup"]) if "speedup" in best and math.isfinite(float(best["speedup"])) else 1.0
    return Recommendation(best=str(best["name"]), batch_size=int(batch_size), speedup=speedup,
                          reasons=ordered, table=table, verdict=verdict, within_noise=within_noise)


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

"""Graph optimization: onnxoptimizer passes and ONNX Runtime's offline optimization, with a diff.

Both return a new artifact with lineage. The pass list is checked against
``onnxoptimizer.get_available_passes()`` so a typo fails with the valid names instead
of being ignored. ONNX Runtime's optimized model at level ``all`` holds CPU-specific
ops, so that artifact records the CPU it was made on; and because a saved optimized
model can keep graph inputs nothing consumes, every result is loaded and run against
its parent before it is returned (DESIGN.md §6).

Models are normalized once on load (kit.optimize.normalize): IR-3 graphs stop listing
initializers as inputs, so ONNX Runtime can fold them. Inputs are only ever dropped when
nothing reads them, subgraphs of ``If``/``Loop``/``Scan`` included, and every result must
keep exactly the model's real inputs and agree with it (kit.optimize.quality).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact, as_artifact, atomic_output
from kit.config import require_int, resolve
from kit.errors import ConfigError, KitError, MissingDependencyError, ModelLoadError, first_line
from kit.optimize.normalize import MAX_IR_VERSION, ModelSource, check_same_inputs, load_onnx, normalize, used_names
from kit.optimize.prepare import input_specs, op_types
from kit.optimize.quality import EQUIVALENT, SYNTHETIC_HINT, check_inputs, compare
from kit.specs import check_feeds, synthetic_feeds

log = logging.getLogger(__name__)

ORT_LEVELS = ("basic", "extended", "layout", "all")
DEFAULT_PASSES = ("eliminate_deadend", "eliminate_identity", "eliminate_nop_dropout", "eliminate_nop_transpose",
                  "eliminate_unused_initializer", "extract_constant_to_initializer", "fuse_bn_into_conv",
                  "fuse_consecutive_transposes", "fuse_matmul_add_bias_into_gemm", "fuse_pad_into_conv",
                  "fuse_transpose_into_gemm")


def available_passes() -> list[str]:
    try:
        import onnxoptimizer
    except ImportError as exc:
        raise MissingDependencyError("onnxoptimizer", "Graph optimization with onnxoptimizer") from exc
    return list(onnxoptimizer.get_available_passes())


@dataclass(frozen=True)
class PassConfig:
    """An onnxoptimizer pass list, validated against the installed onnxoptimizer; duplicates dropped."""

    passes: tuple[str, ...] = DEFAULT_PASSES
    fixed_point: bool = False

    def __post_init__(self) -> None:
        passes = (self.passes,) if isinstance(self.passes, str) else tuple(self.passes)
        if not passes:
            raise ConfigError("passes must name at least one onnxoptimizer pass")
        valid = available_passes()
        unknown = [p for p in passes if p not in valid]
        if unknown:
            raise ConfigError(f"unknown onnxoptimizer pass(es) {unknown}; valid passes are {sorted(valid)}")
        object.__setattr__(self, "passes", tuple(dict.fromkeys(passes)))


def _load(artifact: ModelArtifact):
    return load_onnx(artifact, ModelLoadError)


def _drop_unconsumed_inputs(model) -> list[str]:
    """Remove graph inputs nothing reads, subgraphs included (ORT's saved models can keep them)."""
    used = used_names(model.graph)
    dropped = [v.name for v in model.graph.input if v.name not in used]
    for value in [v for v in model.graph.input if v.name in dropped]:
        model.graph.input.remove(value)
    return dropped


def check_agreement(parent: ModelArtifact | bytes, child_path: Path, seed: int = 0, name: str = "",
                    feeds: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Run parent and child on the same feeds and judge the child (``quality.EQUIVALENT``), or raise.

    ``feeds`` are the user's data (a dict or a ``kit.data.Dataset``); without them, synthetic
    feeds of batch 2. The result says which were used (``checked_with``). The original runs first,
    so an error names the model that failed: the original itself (the feeds do not suit it), or the
    optimized file on feeds the original answers."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    name = name or getattr(parent, "name", "the model")
    feeds, used = check_inputs(feeds)
    try:  # the original first: when it fails, the feeds are at fault, not the rewrite
        with OnnxRuntimeEngine(parent, graph_optimization_level="disable") as ref:
            if feeds is None:
                feeds, used = synthetic_feeds(ref.input_specs, batch_size=2, seed=seed), "synthetic inputs (batch 2)"
            else:
                feeds = check_feeds(ref.input_specs, feeds)
            want = ref.predict(feeds)
    except KitError as exc:
        hint = f"; it ran on {used}: {SYNTHETIC_HINT}" if used.startswith("synthetic") else ""
        raise ModelLoadError(f"{name} itself does not run ({exc}){hint}") from exc
    try:
        with OnnxRuntimeEngine(child_path, graph_optimization_level="disable") as new:
            got = new.predict(feeds)
    except KitError as exc:
        raise ModelLoadError(f"the optimized model of {name} does not run on {used}, which the original "
                             f"answers ({exc})") from exc
    if set(want) != set(got):
        raise ModelLoadError(f"the optimized model of {name} has outputs {sorted(got)}, expected {sorted(want)}")
    report = compare(want, got, gate=EQUIVALENT, scores=False)
    if not report.ok:
        raise ModelLoadError(f"the optimized model of {name} disagrees with it on {used}: {report.reason}")
    err = max((p.max_abs_error for p in report.parts), default=0.0)
    return {"max_abs_diff_vs_parent": err, "worst_rel_error": report.summary()["worst_rel_error"],
            "checked_with": used}


def _normalized(artifact: ModelArtifact) -> tuple[Any, list[str]]:
    # Weights listed as graph inputs are overridable at run time, so ONNX Runtime cannot fold them: an
    # "optimized" graph that keeps them ran at 0.42-0.73x its source. Optimizing means fixing them.
    return normalize(_load(artifact), drop_initializer_inputs=True)


def apply_passes(artifact: ModelSource, config: PassConfig | None = None, out: str | Path | None = None,
                 feeds: Mapping[str, np.ndarray] | None = None, **overrides: Any) -> ModelArtifact:
    """Run onnxoptimizer's passes on an artifact or a path; the result keeps the model's real inputs
    and is checked to run and agree with its parent (on ``feeds`` when given)."""
    import onnx
    import onnxoptimizer

    artifact = as_artifact(artifact)
    config = resolve(PassConfig, config, overrides)
    model, changes = _normalized(artifact)
    try:
        optimized = onnxoptimizer.optimize(model, list(config.passes), fixed_point=config.fixed_point)
    except Exception as exc:
        raise ModelLoadError(f"onnxoptimizer failed on {artifact.name}: {first_line(exc)}") from exc
    optimized.ir_version = min(optimized.ir_version, MAX_IR_VERSION)
    check_same_inputs(model, optimized, f"the onnxoptimizer result of {artifact.name}")
    target = Path(out) if out else artifact.path.parent / f"{artifact.name}.onnxopt.onnx"
    with atomic_output(target) as tmp:
        onnx.save(optimized, str(tmp))
        metrics = check_agreement(artifact, tmp, name=artifact.name, feeds=feeds)
    params: dict[str, Any] = {"passes": list(config.passes), "fixed_point": config.fixed_point}
    if changes:
        params["normalized"] = changes
    return artifact.derive(target, "onnxoptimizer", name=f"{artifact.name}-onnxopt", params=params, metrics=metrics)


def ort_optimize(artifact: ModelSource, level: str = "extended", out: str | Path | None = None,
                 feeds: Mapping[str, np.ndarray] | None = None) -> ModelArtifact:
    """ONNX Runtime's offline optimization at ``level`` of an artifact or a path, written to disk and checked.

    At ``layout``/``all`` the file holds CPU-specific ops (NCHWc): it is only valid on the
    CPU recorded in its params. The model is normalized first, so an IR-3 graph's
    initializers are constants ORT can fold rather than overridable inputs.
    """
    import onnx

    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.profile.sysinfo import cpu_model

    artifact = as_artifact(artifact)
    if level not in ORT_LEVELS:
        raise ConfigError(f"level must be one of {ORT_LEVELS}, got {level!r}")
    normalized, changes = _normalized(artifact)  # also a clear error for a non-ONNX or unreadable file
    source: ModelArtifact | bytes = normalized.SerializeToString() if changes else artifact
    target = Path(out) if out else artifact.path.parent / f"{artifact.name}.ort-{level}.onnx"
    with atomic_output(target) as tmp:
        raw = tmp.with_name("raw.onnx")
        OnnxRuntimeEngine(source, graph_optimization_level=level, optimized_model_filepath=str(raw)).close()
        model = onnx.load(str(raw))
        raw.unlink()
        dropped = _drop_unconsumed_inputs(model)
        check_same_inputs(normalized, model, f"the ONNX Runtime '{level}' result of {artifact.name}")
        onnx.save(model, str(tmp))
        metrics = check_agreement(artifact, tmp, name=artifact.name, feeds=feeds)
    params: dict[str, Any] = {"level": level, "hardware_specific": level in ("layout", "all")}
    if params["hardware_specific"]:
        params["cpu"] = cpu_model()
    if dropped:
        params["unconsumed_inputs_dropped"] = dropped
    if changes:
        params["normalized"] = changes
    return artifact.derive(target, "ort_optimize", name=f"{artifact.name}-ort-{level}", params=params,
                           metrics=metrics)


def op_histogram(artifact: ModelSource) -> dict[str, int]:
    """Op type -> node count of the main graph."""
    return op_types(_load(as_artifact(artifact)))


def graph_diff(before: ModelSource, after: ModelSource):  # -> pandas.DataFrame
    """Per op type: count before, after and the change; a ``TOTAL`` row last."""
    import pandas as pd

    a, b = op_histogram(before), op_histogram(after)
    rows = [{"op_type": op, "before": a.get(op, 0), "after": b.get(op, 0)} for op in sorted(set(a) | set(b))]
    frame = pd.DataFrame(rows, columns=["op_type", "before", "after"])
    frame["change"] = frame["after"] - frame["before"]
    frame = frame.sort_values(["change", "op_type"], key=lambda c: c.abs() if c.name == "change" else c,
                              ascending=[False, True])
    total = pd.DataFrame([{"op_type": "TOTAL", "before": sum(a.values()), "after": sum(b.values()),
                           "change": sum(b.values()) - sum(a.values())}])
    return pd.concat([frame, total], ignore_index=True)


def graph_summary(artifacts: list[ModelSource]):  # -> pandas.DataFrame
    """One row per artifact: node count, distinct op types, inputs, size."""
    import pandas as pd

    rows = []
    for art in map(as_artifact, artifacts):
        model = _load(art)
        rows.append({"name": art.name, "nodes": len(model.graph.node), "op_types": len(op_types(model)),
                     "inputs": len(input_specs(model)), "size_kb": art.size_bytes / 1024,
                     "lineage": art.describe()})
    return pd.DataFrame(rows)


def load_times(artifacts: list[ModelSource], level: str = "disable", repeats: int = 3):  # -> pandas.DataFrame
    """Median milliseconds to create an ONNX Runtime session for each artifact, interleaved.

    ``load_low_ms``/``load_high_ms`` are the fastest and slowest of the ``repeats`` loads (the
    spread ``kit.Figure.from_columns(row, "load_ms", n="repeats")`` publishes).

    Offline optimization moves graph work out of session creation: load the optimized
    file with ``level="disable"`` and compare with the original loaded at ``"all"``.
    """
    import time

    import pandas as pd

    from kit.engines.onnxruntime import OnnxRuntimeEngine

    require_int("repeats", repeats)
    artifacts = [as_artifact(a) for a in artifacts]
    samples: dict[str, list[float]] = {a.name: [] for a in artifacts}
    for art in artifacts:  # one untimed load each, so no variant pays for a cold file cache
        OnnxRuntimeEngine(art, graph_optimization_level=level).close()
    for _ in range(repeats):
        for art in artifacts:
            start = time.perf_counter()
            OnnxRuntimeEngine(art, graph_optimization_level=level).close()
            samples[art.name].append(time.perf_counter() - start)
    return pd.DataFrame([{"name": n, "session_level": level, "load_ms": float(np.median(v)) * 1e3,
                          "load_low_ms": min(v) * 1e3, "load_high_ms": max(v) * 1e3, "repeats": len(v)}
                         for n, v in samples.items()])

"""Where the time goes: ONNX Runtime's per-operator profile, by op type and by node, variants side by side.

``op_profile(model, feeds)`` runs the model ``warmup + requests`` times in a session with
``SessionOptions.enable_profiling`` on (the profile written to a temporary folder and
removed), and parses ONNX Runtime's Chrome-trace JSON: every ``cat == "Node"`` event named
``<node>_kernel_time`` is one kernel's run, with ``args.op_name``, ``args.provider``, the
input/output element types and ``dur`` in microseconds. Runs before the first measured
``model_run`` event are the warm-up and are left out; a node's time per request is its median
over the measured runs (one preempted request on a shared machine would dominate a mean).
``parse_ort_profile`` does the parsing alone, for a profile written elsewhere.

``compare_op_profiles({"fp32": a, "int8": b}, feeds)`` puts the op types of several
variants side by side (ms per request each, the change from the first), and
``op_profile_summary`` says in one sentence what changed: which op types were replaced by
which, which shared ones changed most, and, for a quantized variant, which ops stayed
float.

TFLite: the LiteRT Python interpreter (``ai_edge_litert``) offers no per-operator
profiler (op-level timing lives in LiteRT's ``benchmark_model`` command-line tool, which
is not part of its wheel), so only ONNX Runtime models are profiled here; asking for
another format is a ``ConfigError`` that says so.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelLike, as_artifact
from kit.config import require_int
from kit.errors import ConfigError, KitError

KERNEL_SUFFIX = "_kernel_time"
_PRECISIONS = {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16",
               "int8": "int8", "uint8": "int8", "int4": "int4", "uint4": "int4"}
_FLOAT = {"float32", "float64", "float16", "bfloat16"}


def _kinds(items: Any) -> set[str]:
    return {_PRECISIONS[t] for item in items or () if isinstance(item, Mapping) for t in item if t in _PRECISIONS}


def _precision(args: Mapping[str, Any]) -> str:
    """The numeric kinds a node computes in, from its input and output types ('float32', 'int8', 'float32+int8').

    A node whose outputs hold none of them (Shape, Cast to int64...) computes no numbers: ''.
    """
    outputs = _kinds(args.get("output_type_shape"))
    return "+".join(sorted(outputs | _kinds(args.get("input_type_shape")))) if outputs else ""


@dataclass(frozen=True)
class OpProfile:
    """One model's kernel times: ``nodes`` (one row per node, ms per request) over ``requests`` measured runs."""

    name: str
    requests: int
    nodes: Any  # pandas.DataFrame: node, op_type, provider, precision, calls, ms (median per request), mean_ms

    @property
    def total_ms(self) -> float:
        """Summed kernel time per request, ms: the nodes' medians (what the op types' shares divide)."""
        return float(self.nodes["ms"].sum()) if len(self.nodes) else 0.0

    def to_frame(self):
        """One row per op type, slowest first: ms per request, share %, node count, provider, precision."""
        import pandas as pd

        columns = ["op_type", "ms", "share_pct", "count", "provider", "precision"]
        if not len(self.nodes):
            return pd.DataFrame(columns=columns).set_index("op_type")
        join = lambda values: "+".join(sorted({p for v in values for p in str(v).split("+") if p}))  # noqa: E731
        frame = self.nodes.groupby("op_type").agg(ms=("ms", "sum"), count=("node", "nunique"),
                                                   provider=("provider", join), precision=("precision", join))
        frame["share_pct"] = 100.0 * frame["ms"] / (self.total_ms or math.nan)
        return frame.sort_values("ms", ascending=False)[columns[1:]]

    def slowest(self, n: int = 10):
        """The ``n`` slowest nodes: node, op type, ms per request, share %, provider, precision."""
        frame = self.nodes.sort_values("ms", ascending=False).head(n).reset_index(drop=True)
        frame.insert(3, "share_pct", 100.0 * frame["ms"] / (self.total_ms or math.nan))
        return frame


def parse_ort_profile(events: str | os.PathLike[str] | Iterable[Mapping[str, Any]], warmup: int = 0,
                      name: str = "") -> OpProfile:
    """An ``OpProfile`` from ONNX Runtime's profile (a path to its JSON, or the parsed events).

    The first ``warmup`` runs (``model_run`` events, by start time) are left out. A node's
    ``ms`` is the *median* over the measured runs of its time in each run (0 in a run that
    did not execute it), so one preempted request on a shared machine does not make its op
    look slow; ``mean_ms`` is the plain average. A profile with no ``model_run`` events
    averages every kernel event over the calls of the most frequent node.
    """
    import bisect

    import pandas as pd

    if isinstance(events, (str, os.PathLike)):
        try:
            events = json.loads(Path(events).read_text())
        except (OSError, ValueError) as exc:
            raise KitError(f"cannot read ONNX Runtime's profile {events}: {exc}") from exc
    events = list(events)
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    start = runs[warmup] if len(runs) > warmup else (math.inf if runs else -math.inf)
    kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(KERNEL_SUFFIX)
               and e.get("ts", 0) >= start]
    if runs:
        requests = len(runs) - warmup
    else:  # no run markers: count the calls of the most frequent node
        counts = pd.Series([e["name"] for e in kernels]).value_counts()
        requests = int(counts.iloc[0]) if len(counts) else 0
    rows = []
    for e in kernels:
        args = e.get("args") or {}
        rows.append({"node": e["name"][:-len(KERNEL_SUFFIX)], "op_type": args.get("op_name", "?"),
                     "provider": str(args.get("provider", "")).removesuffix("ExecutionProvider"),
                     "precision": _precision(args), "us": float(e.get("dur", 0)),
                     "run": bisect.bisect_right(runs, e.get("ts", 0)) if runs else 0})
    columns = ["node", "op_type", "provider", "precision", "calls", "ms", "mean_ms"]
    if not rows or requests <= 0:
        return OpProfile(name, max(requests, 0), pd.DataFrame(columns=columns))
    raw = pd.DataFrame(rows)
    keys = ["node", "op_type", "provider", "precision"]
    nodes = raw.groupby(keys, as_index=False).agg(calls=("us", "size"), us=("us", "sum"))
    nodes["mean_ms"] = nodes.pop("us") / 1000.0 / requests
    if runs:
        per_run = raw.pivot_table(index=keys, columns="run", values="us", aggfunc="sum", fill_value=0.0)
        per_run = per_run.reindex(columns=range(warmup + 1, len(runs) + 1), fill_value=0.0)
        nodes = nodes.merge((per_run.median(axis=1) / 1000.0).rename("ms").reset_index(), on=keys)
    else:
        nodes["ms"] = nodes["mean_ms"]
    return OpProfile(name, requests, nodes[columns].sort_values("ms", ascending=False).reset_index(drop=True))


def op_profile(model: ModelLike, feeds: Mapping[str, np.ndarray], requests: int = 10, warmup: int = 2,
               name: str | None = None, **engine_options: Any) -> OpProfile:
    """Run ``model`` (ONNX) ``warmup + requests`` times with ONNX Runtime's profiler on; parse what it wrote.

    ``engine_options`` are ``OrtOptions`` fields (threads, ``graph_optimization_level``...),
    as ``create_engine`` takes them, so the profile sees the session the timings see.
    """
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    require_int("requests", requests)
    require_int("warmup", warmup, 0)
    art = as_artifact(model)
    if art.format != "onnx":
        raise ConfigError(f"per-operator profiles come from ONNX Runtime's profiler; {art.name} is a {art.format} "
                          f"model (the LiteRT Python interpreter has no op profiler; its benchmark_model tool does)")
    if "enable_profiling" in engine_options or "profile_file_prefix" in engine_options:
        raise ConfigError("op_profile turns ONNX Runtime's profiler on itself; drop enable_profiling/"
                          "profile_file_prefix from the engine options")
    with tempfile.TemporaryDirectory(prefix="kit-op-profile-") as folder:
        engine = OnnxRuntimeEngine(art, name=name or art.name, enable_profiling=True,
                                   profile_file_prefix=str(Path(folder) / "ort"), **engine_options)
        try:
            for _ in range(warmup + requests):
                engine.predict(feeds)
            path = engine.session.end_profiling()
        finally:
            engine.close()
        return parse_ort_profile(path, warmup=warmup, name=engine.name)


def _as_profile(name: str, value: OpProfile | ModelLike, feeds, requests: int, warmup: int,
                engine_options: Mapping[str, Any]) -> OpProfile:
    if isinstance(value, OpProfile):
        return value
    if feeds is None:
        raise ConfigError(f"compare_op_profiles needs feeds to profile {name!r}")
    return op_profile(value, feeds, requests=requests, warmup=warmup, name=name, **engine_options)


def compare_op_profiles(variants: Mapping[str, OpProfile | ModelLike], feeds: Mapping[str, np.ndarray] | None = None,
                        requests: int = 10, warmup: int = 2, **engine_options: Any):
    """Op types side by side: ``ms[<name>]`` per request and ``precision[<name>]`` per variant, ``delta_ms``.

    ``variants`` maps a label to an artifact or path (profiled here on ``feeds``) or to an
    ``OpProfile`` already taken. ``delta_ms`` is the last variant's time minus the first's
    (absent op types count as 0 ms); rows are sorted by the largest time in any variant.
    ``attrs["total_ms"]`` holds each variant's total, ``attrs["nodes"]`` its nodes as records,
    slowest first (plain data: pandas compares attrs when frames are combined).
    """
    import pandas as pd

    if len(variants) < 2:
        raise ConfigError(f"compare_op_profiles needs at least two variants, got {list(variants)}")
    profiles = {label: _as_profile(label, value, feeds, requests, warmup, engine_options)
                for label, value in variants.items()}
    frames = {label: p.to_frame() for label, p in profiles.items()}
    ms = pd.DataFrame({f"ms[{label}]": f["ms"] for label, f in frames.items()}).fillna(0.0)
    precision = pd.DataFrame({f"precision[{label}]": f["precision"] for label, f in frames.items()}).fillna("")
    frame = pd.concat([ms, precision], axis=1)
    first, last = list(frames)[0], list(frames)[-1]
    frame["delta_ms"] = frame[f"ms[{last}]"] - frame[f"ms[{first}]"]
    frame = frame.loc[ms.max(axis=1).sort_values(ascending=False).index]
    frame.index.name = "op_type"
    frame.attrs["nodes"] = {label: p.nodes.to_dict("records") for label, p in profiles.items()}
    frame.attrs["total_ms"] = {label: p.total_ms for label, p in profiles.items()}
    return frame


def _ops(names: Iterable[str], frame, column: str) -> str:
    return ", ".join(f"{op} ({frame.loc[op, column]:.3g} ms)" for op in names)


def op_profile_summary(frame, reference: str | None = None, candidate: str | None = None, top: int = 3) -> str:
    """One sentence from ``compare_op_profiles``'s frame: what ``candidate`` changed against ``reference``.

    Names the op types only one of them runs (replaced by which), the shared op types whose
    time changed most, and, when the candidate computes in int8 anywhere, the op types it
    still runs in float alone. Defaults: the first and the last variant.
    """
    labels = [c[3:-1] for c in frame.columns if c.startswith("ms[")]
    reference = reference or labels[0]
    candidate = candidate or labels[-1]
    for label in (reference, candidate):
        if label not in labels:
            raise ConfigError(f"{label!r} is not in the frame; it holds {labels}")
    a, b = f"ms[{reference}]", f"ms[{candidate}]"
    ta, tb = float(frame[a].sum()), float(frame[b].sum())
    if ta <= 0 or tb <= 0:
        return f"no kernel time was recorded for {reference if ta <= 0 else candidate}"
    verdict = (f"{ta / tb:.2f}x faster" if tb <= ta else f"{tb / ta:.2f}x slower") + \
        f" than {reference} in operator time ({tb:.3g} vs {ta:.3g} ms per request)"
    gone = frame.index[(frame[a] > 0) & (frame[b] == 0)]
    new = frame.index[(frame[a] == 0) & (frame[b] > 0)]
    shared = frame[(frame[a] > 0) & (frame[b] > 0)]
    parts = []
    if len(gone) or len(new):
        gone_ms, new_ms = frame.loc[gone, a].sum(), frame.loc[new, b].sum()
        parts.append(f"{', '.join(gone[:top * 2]) or 'no op type'} ({gone_ms:.3g} ms in {reference}) "
                     f"gave way to {', '.join(new[:top * 2]) or 'nothing'} ({new_ms:.3g} ms)")
    moved = shared.loc[(shared[b] - shared[a]).abs().sort_values(ascending=False).index[:top]]
    moved = moved[(moved[b] - moved[a]).abs() >= 0.01 * ta]  # changes under 1 % of the total are noise
    parts += [f"{op} went from {row[a]:.3g} to {row[b]:.3g} ms" for op, row in moved.iterrows()]
    sentence = f"{candidate} is {verdict}" + (" because " + "; ".join(parts) if parts else
                                              ": no op type changed by more than 1 % of the total")
    precision = f"precision[{candidate}]"
    if precision in frame and frame[precision].str.contains("int").any():
        floats = frame.index[(frame[b] > 0) & frame[precision].map(lambda p: bool(p) and set(p.split("+")) <= _FLOAT)]
        floats = frame.loc[floats, b].sort_values(ascending=False).index
        sentence += ("; these ops stayed float: " + _ops(floats[:top * 2], frame, b) if len(floats)
                     else "; no op stayed float")
    return sentence + "."

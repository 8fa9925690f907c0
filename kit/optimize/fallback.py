"""Accuracy-aware dynamic int8: quantize every MatMul, then keep the noisiest few in float until quality holds.

Quantizing every MatMul of all-MiniLM-L6-v2 costs 0.054 of cosine per-tensor and 0.012
per-channel, both under a 0.99 target; keeping the six FFN-output MatMuls in float (what a
person reading the graph would try) holds 0.992 but gives up a quarter of the speed (1.61x
float32 at batch 8 against 2.15x; ``benchmarks/bench_real_models.py``). Which nodes to keep
is a measurement, not a rule, as in Olive's and Intel Neural Compressor's accuracy-aware tuning:

1. rank: each candidate's own quantization noise, its output error when it alone is int8,
   simulated in NumPy the way ONNX Runtime's dynamic quantization computes it (activations
   uint8 asymmetric per tensor, weights int8 symmetric per tensor or per output channel) on
   the real float inputs it receives from the user's data, one float32 pass for all nodes;
2. search: keep the k noisiest in float, quantize with ONNX Runtime's real quantizer and judge
   the whole model's outputs against float32 on the user's data (worst cosine over outputs,
   padded positions left out), k = 0, 1, 2, 4, ... until the target holds, then bisect down.

The data searched on should not be the data the variant is later judged on (``evaluate``);
notebook 01 searches on its calibration split. Candidates are MatMul and Gemm nodes with a
constant 2-D weight (what dynamic quantization makes integer); other quantized ops stay as
the quantizer leaves them.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact, as_artifact
from kit.config import resolve
from kit.errors import ConfigError, QuantizationError
from kit.optimize.normalize import ModelSource
from kit.optimize.prepare import _onnx, prepare
from kit.optimize.quality import compare, padding_masks
from kit.optimize.quantize_onnx import DynamicQuantConfig, quantize_dynamic

log = logging.getLogger(__name__)

CANDIDATE_OPS = ("MatMul", "Gemm")
BATCH = 8  # samples per inference while searching: bounds memory on long sequences


def candidate_nodes(model: Any) -> dict[str, tuple[str, np.ndarray]]:
    """Node name -> (its activation input, its weight as [in, out]) for MatMul/Gemm with a constant 2-D weight."""
    from onnx import numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    out: dict[str, tuple[str, np.ndarray]] = {}
    for node in model.graph.node:
        if node.op_type not in CANDIDATE_OPS or len(node.input) < 2 or node.input[1] not in weights or not node.name:
            continue
        attrs = {a.name: a.i for a in node.attribute if a.name in ("transA", "transB")}
        if attrs.get("transA", 0):
            continue
        weight = numpy_helper.to_array(weights[node.input[1]])
        if weight.ndim != 2 or weight.dtype != np.float32:
            continue
        out[node.name] = (node.input[0], weight.T if attrs.get("transB", 0) else weight)
    return out


def simulated_int8_error(x: np.ndarray, weight: np.ndarray, per_channel: bool) -> float:
    """Relative error of ``x @ weight`` when ONNX Runtime's dynamic int8 computes it (NumPy simulation)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.clip(np.round(-lo / scale), 0, 255)
    xq = np.clip(np.round(x / scale) + zero, 0, 255) - zero
    wmax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
    wscale = np.where(wmax > 0, wmax / 127.0, 1.0)
    wq = np.clip(np.round(w / wscale), -127, 127)
    exact = x @ w
    approx = (xq @ wq) * scale * wscale
    norm = float(np.linalg.norm(exact))
    return float(np.linalg.norm(approx - exact) / norm) if norm else 0.0


def _batches(data: Any) -> list[dict[str, np.ndarray]]:
    from kit.data import Dataset

    if isinstance(data, Dataset):
        return data.batches(BATCH) if data.requests is None else [dict(r) for r in data.requests]
    if isinstance(data, Mapping):
        return [{k: np.asarray(v) for k, v in data.items()}]
    if isinstance(data, Sequence) and data and all(isinstance(b, Mapping) for b in data):
        return [{k: np.asarray(v) for k, v in b.items()} for b in data]
    raise ConfigError(f"data must be a kit.data.Dataset, a dict of input name -> array, or a non-empty list of "
                      f"such dicts, got {type(data).__name__}")


def _outputs(path: Path | bytes, batches: list[dict[str, np.ndarray]],
             names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every batch's outputs (all of them, or ``names``), concatenated along the first axis."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), options,
                                   providers=["CPUExecutionProvider"])
    known = [o.name for o in session.get_outputs()]
    wanted = list(names) if names is not None else known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ConfigError(f"outputs {unknown} are not outputs of the model; it has {known}")
    runs = [session.run(wanted, b) for b in batches]
    return {n: np.concatenate([np.atleast_1d(np.asarray(r[i])) for r in runs]) for i, n in enumerate(wanted)}


def quantization_noise(artifact: ModelSource, data: Any, per_channel: bool = False) -> dict[str, float]:
    """Each candidate node's relative output error when it alone is int8, noisiest first (one float32 pass)."""
    onnx = _onnx()
    art = as_artifact(artifact)
    model = onnx.load(str(art.path))
    nodes = candidate_nodes(model)
    if not nodes:
        return {}
    inputs = sorted({x for x, _ in nodes.values()})
    graph_inputs = {i.name for i in model.graph.input}
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in inputs if name not in existing and name not in graph_inputs)
    batches = _batches(data)
    seen = _outputs(model.SerializeToString(), batches, [n for n in inputs if n not in graph_inputs])
    for name in inputs:
        if name in graph_inputs:
            seen[name] = np.concatenate([b[name] for b in batches])
    noise = {node: simulated_int8_error(seen[x].reshape(-1, w.shape[0]), w, per_channel)
             for node, (x, w) in nodes.items()}
    return dict(sorted(noise.items(), key=lambda kv: -kv[1]))


def quantize_dynamic_within(artifact: ModelSource, data: Any, min_cosine: float = 0.99,
                            config: DynamicQuantConfig | None = None, out: str | Path | None = None,
                            padding_mask: Mapping[str, Sequence[str]] | None = None,
                            outputs: Sequence[str] | None = None, **overrides: Any) -> ModelArtifact:
    """Dynamic int8 with the fewest noisiest MatMuls kept in float32 so the worst output cosine on ``data``
    stays at least ``min_cosine``; ``QuantizationError`` when none does short of keeping everything float.

    ``data``: a ``kit.data.Dataset``, a dict of input -> array, or a list of such batches (the
    search's data; judge the result on other data). ``padding_mask`` (mask input -> outputs) as in
    ``EvalConfig``; ``outputs`` the outputs that judge (default: every one; e.g. a sentence encoder's
    ``("sentence_embedding",)`` when its per-token output is not used). The result's
    ``params["fallback"]`` records each node's simulated noise, every step tried (nodes kept in float,
    worst cosine) and the nodes kept; its name ends ``-keepNnodes``.
    """
    if not -1.0 <= min_cosine <= 1.0:
        raise ConfigError(f"min_cosine must be in [-1, 1], got {min_cosine}")
    art = as_artifact(artifact)
    config = resolve(DynamicQuantConfig, config, overrides)
    batches = _batches(data)
    joined = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
    masks = {k: v for k, v in padding_masks(padding_mask, joined).items() if outputs is None or k in outputs}
    reference = _outputs(art.path, batches, outputs)
    tried: dict[int, float] = {}

    with tempfile.TemporaryDirectory(prefix="kit-fallback-") as work:
        # ranked on the graph the quantizer sees (nodes named, pre-processed), so the names it keeps exist there
        prepared, _ = prepare(art, Path(work), config.preprocess)
        noise = quantization_noise(prepared, batches, config.per_channel)
        order = [n for n in noise if n not in config.exclude_nodes]
        if not order:
            raise QuantizationError(f"{art.name} has no MatMul or Gemm with a constant 2-D float32 weight to keep "
                                    f"in float or quantize; use kit.optimize.quantize_onnx.quantize_dynamic directly")

        def cosine(k: int) -> float:
            if k not in tried:
                step = dataclasses.replace(config, exclude_nodes=config.exclude_nodes + tuple(order[:k]))
                variant = quantize_dynamic(art, step, out=Path(work) / f"keep{k}.onnx", feeds=batches[0],
                                           padding_mask=padding_mask)
                got = _outputs(variant.path, batches, outputs)
                tried[k] = compare(reference, got, masks=masks).summary()["min_cosine"]
                log.info("%s keeping %d of %d nodes in float: worst cosine %.5f", art.name, k, len(order), tried[k])
            return tried[k]

        last = len(order) - 1  # at least one node stays int8
        counts = sorted({0, last, *(min(2 ** i, last) for i in range(last.bit_length()))})
        good = next((k for k in counts if cosine(k) >= min_cosine), None)  # 0, 1, 2, 4, ...: the first that holds
        if good is None:
            worst = ", ".join(f"{n} kept: {c:.4f}" for n, c in sorted(tried.items()))
            raise QuantizationError(f"no dynamic int8 variant of {art.name} holds cosine {min_cosine:g} on the given "
                                    f"data even with all but one of its {len(order)} MatMul/Gemm in float ({worst}); "
                                    f"keep it in float32, or lower min_cosine")
        bad = max((n for n in tried if n < good), default=-1)
        while good - bad > 1:  # bisect: the smallest count that holds it
            middle = (good + bad) // 2
            good, bad = (middle, bad) if cosine(middle) >= min_cosine else (good, middle)
    kept = tuple(order[:good])
    final = dataclasses.replace(config, exclude_nodes=config.exclude_nodes + kept)
    result = quantize_dynamic(art, final, out=out, feeds=batches[0], padding_mask=padding_mask)
    record = {"min_cosine": min_cosine, "outputs": list(reference), "kept_float": list(kept), "steps": [
        {"kept_float": n, "min_cosine": round(c, 6)} for n, c in sorted(tried.items())],
        "noise": {n: round(v, 6) for n, v in noise.items()}}
    return dataclasses.replace(result, params={**result.params, "fallback": record},
                               metrics={**result.metrics, "search_min_cosine": tried[good]})

"""ONNX Runtime's transformer optimizer as an artifact -> artifact variant, with its fusions counted.

``onnxruntime.transformers.optimizer.optimize_model`` rewrites a BERT-like graph into ORT's
fused contrib ops (``Attention``, ``SkipLayerNormalization``, ``LayerNormalization``, ``Gelu`` /
``BiasGelu``, ``EmbedLayerNormalization``): fewer, larger kernels than the generic level-2
session optimizations find. The result is a new artifact with lineage (model type, heads,
hidden size, fusion switches, which fusions happened) and is run against its parent on the
same feeds before it is returned; quantizing the fused graph is then a plain
``quantize_dynamic(fused)``.

    fused = optimize_transformer(get_model("minilm", format="onnx"), num_heads=12, hidden_size=384,
                                 feeds=sample_feeds("minilm", batch_size=2))
    fused.params["fused_operators"]     # {"Attention": 6, "SkipLayerNormalization": 12, ...}
    fusion_diff(parent, fused)          # op types before / after (kit.optimize.graph.graph_diff)

``opt_level`` 0 and 1 (the default) keep the file hardware-independent; 2 and 99 add ORT's
session optimizations and tie the file to the CPU (recorded in ``params["cpu"]``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact, atomic_output
from kit.config import require_int, resolve
from kit.errors import ConfigError, KitError, MissingDependencyError, ModelLoadError, first_line
from kit.optimize.quality import compare

log = logging.getLogger(__name__)

MODEL_TYPES = ("bert", "bert_tf", "bert_keras")
OPT_LEVELS = (0, 1, 2, 99)
FUSIONS = ("gelu", "layer_norm", "attention", "skip_layer_norm", "embed_layer_norm", "bias_skip_layer_norm",
           "bias_gelu", "gelu_approximation", "shape_inference")
FUSED_OPS = ("Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
             "LayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
             "Gelu", "FastGelu", "BiasGelu", "BiasSkipLayerNormalization")


@dataclass(frozen=True)
class TransformerOptConfig:
    """What ``optimize_model`` is told: model type, shape hints, level and fusions switched off.

    ``num_heads``/``hidden_size`` 0 let the optimizer detect them (it warns and may skip the
    attention fusion when it cannot); ``disable`` names fusions to switch off (``FUSIONS``),
    e.g. ``("gelu_approximation",)`` is off by default anyway, ``("attention",)`` to see its share.
    """

    model_type: str = "bert"
    num_heads: int = 0
    hidden_size: int = 0
    opt_level: int = 1
    disable: tuple[str, ...] = ()
    min_cosine: float = 0.9999

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        require_int("num_heads", self.num_heads, 0)
        require_int("hidden_size", self.hidden_size, 0)
        if self.num_heads and self.hidden_size and self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if self.opt_level not in OPT_LEVELS:
            raise ConfigError(f"opt_level must be one of {OPT_LEVELS}, got {self.opt_level!r}")
        disable = (self.disable,) if isinstance(self.disable, str) else tuple(self.disable)
        unknown = [d for d in disable if d not in FUSIONS]
        if unknown:
            raise ConfigError(f"unknown fusion(s) {unknown} in disable; valid: {list(FUSIONS)}")
        object.__setattr__(self, "disable", tuple(dict.fromkeys(disable)))
        if not 0.0 < self.min_cosine <= 1.0:
            raise ConfigError(f"min_cosine must be in (0, 1], got {self.min_cosine!r}")


def _default_feeds(path: Path) -> dict[str, np.ndarray]:
    """Token-like feeds: ids in [1, 1000), masks of ones (the last row half padded), floats normal."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    with OnnxRuntimeEngine(path, graph_optimization_level="disable") as engine:
        specs = engine.input_specs
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) and d > 0 else (2 if axis == 0 else 16)
                      for axis, d in enumerate(spec.shape))
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif "mask" in spec.name.lower():
            mask = np.ones(shape, spec.dtype)
            if len(shape) == 2 and shape[0] > 1:
                mask[-1, shape[1] // 2:] = 0
            feeds[spec.name] = mask
        elif "type" in spec.name.lower():
            feeds[spec.name] = np.zeros(shape, spec.dtype)
        else:
            feeds[spec.name] = rng.integers(1, 1000, size=shape).astype(spec.dtype)
    return feeds


def _ort_pass(path: Path, out: Path, opt_level: int) -> str:
    """ONNX Runtime's session optimizations at ``opt_level`` (1 basic, 2 extended, 99 all), saved to ``out``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        2: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        99: ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[opt_level]
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return str(out)


def _keep_types(parent: Path, model) -> int:
    """Give the fused graph the parent's inferred types for the tensors both hold; the count added.

    ONNX's shape inference does not know ORT's fused ops, so without this the quantizer cannot
    type a MatMul that feeds one ("Unable to find data type for weight_name=..."), and int8 on
    the fused graph fails.
    """
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(onnx.load(str(parent)))
    except Exception as exc:  # noqa: BLE001 - types are a help for later tools, not needed to run
        log.warning("could not infer the parent's types (%s); the fused model keeps none", first_line(exc))
        return 0
    graph = model.graph
    names = {o for n in graph.node for o in n.output}
    known = {v.name for v in [*graph.value_info, *graph.input, *graph.output]}
    added = 0
    for value in inferred.graph.value_info:
        if value.name in names and value.name not in known and value.type.tensor_type.elem_type:
            graph.value_info.append(value)
            added += 1
    return added


def output_agreement(parent: ModelArtifact | Path, child: ModelArtifact | Path,
                     feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Worst cosine and largest absolute difference over all outputs, parent vs child, same feeds."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    try:  # the parent first: when it fails, the feeds are at fault, not the fusions
        with OnnxRuntimeEngine(parent) as ref:
            want = ref.predict(dict(feeds))
    except KitError as exc:
        raise ModelLoadError(f"the model to optimize does not run on the check's feeds ({exc}); pass feeds= that "
                             f"it takes (kit.models.model_data or a dict)") from exc
    try:
        with OnnxRuntimeEngine(child) as new:
            got = new.predict(dict(feeds))
    except KitError as exc:
        raise ModelLoadError(f"the transformer-optimized model does not run where its parent does: {exc}") from exc
    if set(want) != set(got):
        raise ModelLoadError(f"the transformer-optimized model has outputs {sorted(got)}, expected {sorted(want)}")
    parts = compare(want, got, scores=False).parts  # the figures only: min_cosine is the gate here
    if any(p.nonfinite or np.isnan(p.cosine) for p in parts):  # NaN/inf the parent lacks, or a reshaped output
        return {"cosine_vs_parent": float("nan"), "max_abs_diff_vs_parent": float("inf")}
    return {"cosine_vs_parent": min((p.cosine for p in parts), default=1.0),
            "max_abs_diff_vs_parent": max((p.max_abs_error for p in parts), default=0.0)}


def optimize_transformer(artifact: ModelArtifact, config: TransformerOptConfig | None = None,
                         out: str | Path | None = None, feeds: Mapping[str, np.ndarray] | None = None,
                         **overrides: Any) -> ModelArtifact:
    """ONNX Runtime's transformer fusions on an ONNX artifact; checked against its parent on ``feeds``.

    Raises ``ModelLoadError`` when the optimizer fails, the result does not run, returns NaN/inf
    or agrees worse than ``min_cosine``. ``params["fused_operators"]`` counts what was fused
    (all zero means the graph's patterns were not recognized: the file still runs, but is no faster).
    """
    try:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "The transformer optimizer") from exc

    config = resolve(TransformerOptConfig, config, overrides)
    if artifact.format != "onnx":
        raise ModelLoadError(f"{artifact.name} is a {artifact.format} model; the transformer optimizer takes ONNX")
    options = FusionOptions(config.model_type)
    for name in config.disable:
        setattr(options, f"enable_{name}", False)
    target = Path(out) if out else artifact.path.parent / f"{artifact.name}.fused.onnx"
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="kit-fuse-") as work:
            source = str(artifact.path)
            if config.opt_level:
                # optimize_model's own ORT pass imports torch (ORT 1.31); run that pass here instead
                source = _ort_pass(artifact.path, Path(work) / "ort.onnx", config.opt_level)
            model = optimizer.optimize_model(source, model_type=config.model_type, num_heads=config.num_heads,
                                             hidden_size=config.hidden_size, optimization_options=options,
                                             opt_level=0, use_gpu=False)
    except Exception as exc:
        raise ModelLoadError(f"ONNX Runtime's transformer optimizer failed on {artifact.name}: "
                             f"{first_line(exc)}") from exc
    fused = {k: int(v) for k, v in (model.get_fused_operator_statistics() or {}).items() if v}
    kept = _keep_types(artifact.path, model.model)
    feeds = dict(feeds) if feeds is not None else _default_feeds(artifact.path)
    with atomic_output(target) as tmp:
        model.save_model_to_file(str(tmp))
        metrics = output_agreement(artifact, tmp, feeds)
        if not metrics["cosine_vs_parent"] >= config.min_cosine:
            raise ModelLoadError(f"the transformer-optimized {artifact.name} disagrees with its parent: cosine "
                                 f"{metrics['cosine_vs_parent']:.6f} < {config.min_cosine} (max abs diff "
                                 f"{metrics['max_abs_diff_vs_parent']:.3g})")
    if not fused:
        log.warning("the transformer optimizer fused nothing in %s: its patterns were not recognized", artifact.name)
    params: dict[str, Any] = {**asdict(config), "disable": list(config.disable), "fused_operators": fused,
                              "types_kept": kept}
    if config.opt_level > 1:
        from kit.profile.sysinfo import cpu_model

        params["hardware_specific"], params["cpu"] = True, cpu_model()
    return artifact.derive(target, "optimize_transformer", name=f"{artifact.name}-fused", params=params,
                           metrics=metrics)


def fused_operators(artifact: ModelArtifact) -> dict[str, int]:
    """Count of each of ORT's fused transformer ops in the artifact's graph (zero counts left out)."""
    from kit.optimize.graph import op_histogram

    hist = op_histogram(artifact)
    return {op: hist[op] for op in FUSED_OPS if hist.get(op)}


def fusion_diff(before: ModelArtifact, after: ModelArtifact):  # -> pandas.DataFrame
    """Op types before and after (``kit.optimize.graph.graph_diff``), fused ops marked in a column."""
    from kit.optimize.graph import graph_diff

    frame = graph_diff(before, after)
    frame["fused_op"] = frame["op_type"].isin(FUSED_OPS)
    return frame


def attention_shape(artifact: ModelArtifact, feeds: Mapping[str, np.ndarray]) -> tuple[int, int] | None:
    """``(num_heads, hidden_size)`` of the graph's first attention, read from one run on ``feeds``; None if none.

    Attention is a Softmax whose output feeds a MatMul (scores times values): the Softmax's input is
    ``[batch, heads, query, key]`` and that MatMul's output ``[batch, heads, query, head_dim]``, so
    their shapes give the hints ``optimize_transformer`` needs to fuse ``Attention`` (ORT's own guess
    fails on graphs whose reshape shapes are computed, as tf2onnx writes them). A CNN's final Softmax
    feeds no MatMul: None. Heads folded into the batch axis (rank 3 scores) also give None.
    """
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(artifact.path))
    except Exception as exc:  # noqa: BLE001 - a file we cannot read has no attention we can find
        log.warning("cannot read %s to look for attention: %s", artifact.name, first_line(exc))
        return None
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = next(((node.input[0], after.output[0]) for node in model.graph.node if node.op_type == "Softmax"
                  for after in consumers.get(node.output[0], []) if after.op_type == "MatMul"), None)
    if found is None:
        return None
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in found if name not in known)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the tensors' names
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        scores, context = session.run(list(found), dict(feeds))
    except Exception as exc:  # noqa: BLE001 - no hints then; the caller fuses without Attention or not at all
        log.warning("could not run %s to read its attention shape: %s", artifact.name, first_line(exc))
        return None
    if scores.ndim != 4 or context.ndim != 4 or scores.shape[1] != context.shape[1] or scores.shape[1] < 1:
        return None
    heads, head_dim = int(scores.shape[1]), int(context.shape[-1])
    return heads, heads * head_dim

"""ONNX Runtime quantization and float16 conversion: artifact in, new artifact with lineage out.

The work is done by ``onnxruntime.quantization`` (dynamic, static with calibration,
pre-processing) and ``onnxconverter_common.float16``; this module adds what a user
needs around them: typed configs, calibration from real samples checked against the
model's inputs, the repairs that models from elsewhere need (kit.optimize.normalize on
load; old opsets upgraded; pre-processing retried without symbolic shape inference, then
skipped), a self-check against the parent on the user's data (or synthetic inputs, said
so) that refuses NaN/inf, lost inputs and collapsed outputs, one error that says what was
tried, and never a broken file on disk. Every transform takes a path or an artifact.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact, as_artifact, atomic_output
from kit.config import require_int, resolve
from kit.errors import ConfigError, InputError, KitError, QuantizationError, first_line
from kit.optimize.normalize import MAX_IR_VERSION, ModelSource, check_same_inputs, load_onnx, normalize
from kit.optimize.quality import Slices
from kit.specs import TensorSpec, check_feeds, describe, synthetic_feeds

log = logging.getLogger(__name__)

QUANT_TYPES = ("int8", "uint8")
FORMATS = ("qdq", "qoperator")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
MIN_OPSET = 13  # QDQ per-channel and most quantized kernels need opset >= 13
_WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1, "ConvTranspose": 1, "Attention": 1}
_SHORT = {"int8": "s8", "uint8": "u8"}

Calibration = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]


def _tuple(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of non-empty names, got {value!r}")
    return tuple(value)


def _scope_tag(op_types: tuple[str, ...], exclude_nodes: tuple[str, ...], exclude_op_types: tuple[str, ...],
               default_excluded: tuple[str, ...] = ()) -> str:
    """Tag suffix naming a non-default choice of what is quantized, so variant names stay unique."""
    tag = ("-only-" + "+".join(o.lower() for o in op_types)) if op_types else ""
    if exclude_op_types != default_excluded:
        tag += "-keep-" + ("+".join(o.lower() for o in exclude_op_types) or "none")
    if exclude_nodes:
        tag += f"-keep{len(exclude_nodes)}nodes"
    return tag


def _check_choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class DynamicQuantConfig:
    """Weights quantized offline, activations at run time (``quantize_dynamic``).

    ``op_types`` limits which op types are quantized (empty: ORT's default set);
    ``exclude_nodes``/``exclude_op_types`` keep those nodes in float32.
    ``preprocess`` runs ORT's shape inference and optimization first (folds weights that
    are computed at run time into constants, so they can be quantized).
    """

    weight_type: str = "int8"
    per_channel: bool = False
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    preprocess: bool = True

    def __post_init__(self) -> None:
        _check_choice(self.weight_type, QUANT_TYPES, "weight_type")
        for name in ("op_types", "exclude_nodes", "exclude_op_types"):
            object.__setattr__(self, name, _tuple(getattr(self, name), name))

    @property
    def tag(self) -> str:
        return ("dyn-" + _SHORT[self.weight_type] + ("-pc" if self.per_channel else "")
                + ("-rr" if self.reduce_range else "") + ("" if self.preprocess else "-nopre")
                + _scope_tag(self.op_types, self.exclude_nodes, self.exclude_op_types))


@dataclass(frozen=True)
class StaticQuantConfig:
    """Weights and activations quantized offline from calibration over real samples.

    ``activation_type`` and ``weight_type`` are chosen independently (U8S8 is
    ``uint8``/``int8``; S8S8 is ``int8``/``int8``): which is faster depends on the CPU,
    so measure both. ``calibration_samples`` caps how many samples calibrate;
    ``calibration_batch_size`` how many go through the model at once (a model with a
    fixed batch dimension dictates its own). ``Softmax`` is excluded by default: 8-bit
    probabilities over many classes collapse (measured on the zoo's MobileNetV2: cosine
    0.40 against float32 with it quantized, 0.995 without); pass ``()`` to quantize it too.
    """

    format: str = "qdq"
    activation_type: str = "uint8"
    weight_type: str = "int8"
    calibration: str = "minmax"
    calibration_samples: int = 64
    calibration_batch_size: int = 8
    percentile: float = 99.999
    per_channel: bool = False
    reduce_range: bool = False
    op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ("Softmax",)
    preprocess: bool = True

    def __post_init__(self) -> None:
        _check_choice(self.format, FORMATS, "format")
        _check_choice(self.activation_type, QUANT_TYPES, "activation_type")
        _check_choice(self.weight_type, QUANT_TYPES, "weight_type")
        _check_choice(self.calibration, CALIBRATION_METHODS, "calibration")
        require_int("calibration_samples", self.calibration_samples)
        require_int("calibration_batch_size", self.calibration_batch_size)
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile!r}")
        for name in ("op_types", "exclude_nodes", "exclude_op_types"):
            object.__setattr__(self, name, _tuple(getattr(self, name), name))

    @property
    def tag(self) -> str:
        return (f"{self.format}-{_SHORT[self.activation_type]}{_SHORT[self.weight_type]}-{self.calibration}"
                + ("-pc" if self.per_channel else "") + ("-rr" if self.reduce_range else "")
                + ("" if self.preprocess else "-nopre")
                + _scope_tag(self.op_types, self.exclude_nodes, self.exclude_op_types, ("Softmax",)))


@dataclass(frozen=True)
class Float16Config:
    """float16 weights and compute with float32 inputs and outputs kept (``keep_io_types``)."""

    keep_io_types: bool = True
    exclude_op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("exclude_op_types", "exclude_nodes"):
            object.__setattr__(self, name, _tuple(getattr(self, name), name))

    @property
    def tag(self) -> str:
        return "fp16"


# ---------------------------------------------------------------- model inspection helpers

def _onnx():
    import onnx

    return onnx


def input_specs(model) -> tuple[TensorSpec, ...]:
    """Real inputs of an ``onnx.ModelProto`` (graph inputs that are not initializers)."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        specs.append(TensorSpec(value.name, helper.tensor_dtype_to_np_dtype(tensor.elem_type), dims))
    return tuple(specs)


def op_types(model) -> dict[str, int]:
    """Op-type histogram of a model's main graph."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def _quantized_count(model) -> int:
    onnx = _onnx()
    ops = sum(n for op, n in op_types(model).items()
              if "Integer" in op or op.startswith(("QLinear", "Quantize", "DynamicQuantize", "QGemm", "QAttention"))
              or op == "MatMulNBits")
    int_weights = sum(1 for i in model.graph.initializer
                      if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(i.dims) > 1)
    return ops + int_weights


def _runtime_weights(model) -> list[str]:
    """Nodes whose weight input is computed at run time rather than stored as an initializer."""
    inits = {i.name for i in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    found = []
    for node in model.graph.node:
        idx = _WEIGHT_INPUT.get(node.op_type)
        if idx is None or len(node.input) <= idx or node.input[idx] in inits:
            continue
        producer = producers.get(node.input[idx])
        if producer is not None and producer.op_type != "DequantizeLinear":
            found.append(f"{node.name or node.op_type} (weight from {producer.op_type})")
    return found


def runtime_specific_ops(model) -> list[str]:
    """Op types outside the standard ONNX domains (e.g. ``com.microsoft`` ops from ORT's offline levels)."""
    return sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx", "ai.onnx.ml")})


def _hint(path: Path, default: str) -> str:
    """What to do when quantizing ``path`` failed: undo ORT-specific fusions, or ``default``."""
    contrib = runtime_specific_ops(_onnx().load(str(path), load_external_data=False))
    if contrib:
        return (f"the model holds ONNX Runtime-specific ops {contrib[:5]} (from offline optimization at level "
                f"'extended' or 'all') that the quantizer cannot type: quantize the original model, or one "
                f"optimized at level 'basic', and let ONNX Runtime optimize the quantized model when it loads")
    return default


def _cpu_note() -> dict[str, Any]:
    from kit.profile.sysinfo import environment

    env = environment()
    return {"cpu_model": env["cpu_model"], "cpu_int8_flags": env["int8_flags"], "cpu_fast_int8": env["fast_int8"]}


def warn_if_slow_int8(reduce_range: bool) -> None:
    """Warn when the CPU lacks VNNI-class int8 instructions, where int8 can lose to float32."""
    from kit.profile.sysinfo import has_fast_int8

    if not has_fast_int8():
        message = ("this CPU has no VNNI/AMX/dot-product int8 instructions: int8 models may run slower than "
                   "float32 here, so measure them (kit.optimize.evaluate.evaluate)")
        if not reduce_range:
            message += "; use reduce_range=True (7-bit weights) to avoid saturation in the int8 kernels"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        log.warning(message)


@contextmanager
def quiet_ort_quantization() -> Iterator[None]:
    """Silence ORT quantization's prints and root-logger warnings (kit logs what matters).

    It also runs ORT in a scratch working directory: when symbolic shape inference gives up,
    ORT dumps ``sym_shape_infer_temp.onnx`` plus uuid-named ``.data`` files into the current
    directory, which would litter a user's (or the repository's) folder. Callers pass absolute
    paths for that reason.
    """
    class _DropOrt(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "onnxruntime" not in record.pathname

    handler, drop = logging.NullHandler(), _DropOrt()
    root = logging.getLogger()
    root.addHandler(handler)  # stops logging.warning() from calling basicConfig
    root.addFilter(drop)
    scratch = tempfile.mkdtemp(prefix="kit-ortq-")
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), contextlib.chdir(scratch):
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        root.removeFilter(drop)
        root.removeHandler(handler)
        shutil.rmtree(scratch, ignore_errors=True)


def _default_out(artifact: ModelArtifact, tag: str, out: str | Path | None) -> Path:
    """Where a variant goes, made absolute: ORT runs in a scratch directory (quiet_ort_quantization)."""
    target = Path(out) if out is not None else artifact.path.parent / f"{artifact.name}.{tag}.onnx"
    return target.resolve()


def _tried(notes: Mapping[str, Any]) -> str:
    """What was tried before quantizing, for the one error message a failure gets."""
    steps = list(notes.get("normalized", []))
    steps += [f"pre-processing {t}" for t in notes.get("preprocess_failed", [])]
    if notes.get("preprocessed"):
        steps.append(f"pre-processing {notes['preprocessed']} (succeeded)")
    elif "preprocess_failed" not in notes:
        steps.append("no pre-processing (preprocess=False)")
    return "; ".join(steps) or "the model as given"


def _quantize_into(target: Path, artifact: ModelArtifact, source: Path, name: str, kind: str,
                   run: Callable[[str, str], None], notes: dict[str, Any], prepared: Path,
                   feeds: Mapping[str, np.ndarray] | None = None, feeds_note: str = "",
                   slices: Slices | None = None) -> dict[str, Any]:
    """Run one ORT quantizer from ``source`` into ``target`` atomically, translating its failures.

    Returns the self-check's figures (quality against the parent on the check inputs).
    """
    with atomic_output(target) as tmp:
        try:
            with quiet_ort_quantization():
                run(str(source), str(tmp))
        except KitError:
            raise  # e.g. bad calibration data found while ORT reads it
        except Exception as exc:
            hint = _hint(source, "exclude the op types or nodes named, or quantize fewer op types (op_types=...)")
            raise QuantizationError(f"{kind} quantization of {artifact.name} failed: {first_line(exc)}; "
                                    f"tried: {_tried(notes)}; {hint}") from exc
        return _finish(artifact, tmp, source, name, prepared, feeds=feeds, feeds_note=feeds_note, slices=slices)


def prepare(artifact: ModelArtifact, workdir: Path, preprocess: bool) -> tuple[Path, dict[str, Any]]:
    """A copy of the model that ORT's quantizer takes, plus notes on what was changed and tried.

    The model is normalized (kit.optimize.normalize: initializers listed as graph inputs
    dropped, since a run-time override of a quantized weight cannot work; ``Constant``
    weights folded into initializers; nodes named), opsets below 13 are upgraded, and with
    ``preprocess`` ORT's ``quant_pre_process`` runs: first with symbolic shape inference,
    which fails on many real models, then with ``skip_symbolic_shape=True``; if both fail
    (or change the model's real inputs) the normalized model is quantized as it is, and
    the notes say what was tried. The prepared copy is ``workdir / "prepared.onnx"``.
    """
    onnx = _onnx()
    model = load_onnx(artifact, QuantizationError)
    notes: dict[str, Any] = {}
    inits = {i.name for i in model.graph.initializer}
    listed = sum(1 for v in model.graph.input if v.name in inits)
    model, changes = normalize(model, drop_initializer_inputs=True)
    if listed:
        notes["initializer_inputs_removed"] = listed
    if changes:
        notes["normalized"] = changes
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset < MIN_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise QuantizationError(f"{artifact.name} uses opset {opset}, below the {MIN_OPSET} that quantization "
                                    f"needs, and onnx could not upgrade it ({first_line(exc)}); "
                                    f"re-export the model at opset >= {MIN_OPSET}") from exc
        notes["opset_upgraded_from"] = opset
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    workdir = Path(workdir).resolve()  # ORT later runs in a scratch directory
    prepared = workdir / "prepared.onnx"
    onnx.save(model, str(prepared))
    if not preprocess:
        return prepared, notes
    from onnxruntime.quantization.shape_inference import quant_pre_process

    failed: list[str] = []
    for label, options in (("with symbolic shape inference", {}),
                           ("without symbolic shape inference", {"skip_symbolic_shape": True})):
        processed = workdir / f"preprocessed{len(failed)}.onnx"
        try:
            with quiet_ort_quantization():
                quant_pre_process(str(prepared), str(processed), **options)
            check_same_inputs(model, processed, "the pre-processed model", QuantizationError)
        except Exception as exc:  # noqa: BLE001 - ORT raises anything here (even AssertionError); recorded
            failed.append(f"{label} failed ({first_line(exc)[:200]})")
            log.info("quantization pre-processing of %s %s", artifact.name, failed[-1])
            continue
        notes["preprocessed"] = label
        if failed:
            notes["preprocess_failed"] = failed
        return processed, notes
    notes["preprocess_failed"] = failed
    log.warning("quantization pre-processing of %s failed %s and %s; quantizing the normalized model as it is",
                artifact.name, *failed)
    return prepared, notes


def _exclusions(model, exclude_nodes: tuple[str, ...], exclude_op_types: tuple[str, ...]) -> list[str]:
    """Nodes to keep in float: ``exclude_nodes`` (checked to exist) and every node of ``exclude_op_types``."""
    names = {n.name for n in model.graph.node}
    missing = [n for n in exclude_nodes if n not in names]
    if missing:
        raise ConfigError(f"exclude_nodes names nodes the model does not have: {missing}; "
                          f"it has e.g. {sorted(names)[:10]}")
    return list(exclude_nodes) + [n.name for n in model.graph.node
                                  if n.op_type in exclude_op_types and n.name not in exclude_nodes]


def verify(path: Path, name: str, feeds: Mapping[str, np.ndarray] | None = None) -> None:
    """Load ``path`` in ONNX Runtime and run it once, or raise ``QuantizationError``."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    try:
        with OnnxRuntimeEngine(path, name=name, graph_optimization_level="disable") as engine:
            engine.predict(feeds if feeds is not None else synthetic_feeds(engine.input_specs))
    except KitError as exc:
        raise QuantizationError(f"the quantized model {name} does not run in ONNX Runtime ({exc}); "
                                f"exclude the failing nodes or op types and try again") from exc


def self_check(parent: Path, child: Path, name: str, feeds: Mapping[str, np.ndarray] | None = None,
               feeds_note: str = "", slices: Slices | None = None) -> dict[str, Any]:
    """Run ``child`` and its ``parent`` on the same inputs and judge the child (kit.optimize.quality).

    Refuses (``QuantizationError``) a child that does not run, lost or reshaped an output,
    or returns NaN/inf where the parent does not: such a variant is broken on any data.
    On the user's data (``feeds`` given), an output or declared slice that collapsed to a
    constant is refused too (e.g. a detector's class scores all 0 after int8). Other quality
    problems are recorded (and logged) but do not refuse, because the check inputs may be
    synthetic and the budget is the user's (``evaluate``); the figures say which inputs were used.
    """
    real = feeds is not None
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.optimize.quality import compare

    verify(child, name, feeds)
    with OnnxRuntimeEngine(parent, graph_optimization_level="disable") as ref, \
            OnnxRuntimeEngine(child, name=name, graph_optimization_level="disable") as new:
        if feeds is None:
            feeds, feeds_note = synthetic_feeds(ref.input_specs), "synthetic inputs (batch 1, unknown dims 1)"
        report = compare(ref.predict(feeds), new.predict(feeds), slices=slices, scores=False)
    broken = [p for p in report.parts if p.nonfinite or np.isnan(p.rel_error) or (real and p.collapsed)]
    if broken:
        raise QuantizationError(f"the quantized model {name} is broken on {feeds_note or 'the given inputs'}: "
                                f"{broken[0].label}: {broken[0].reason}; keep the op types involved in float32 "
                                f"(exclude_op_types=... / exclude_nodes=...) or keep this model in float32")
    if not report.ok:
        log.warning("%s differs from its parent on %s: %s", name, feeds_note or "the given inputs", report.reason)
    return {**report.summary(), "checked_with": feeds_note or "the given inputs"}


def _finish(artifact: ModelArtifact, tmp: Path, source: Path, name: str, prepared: Path, feeds=None,
            feeds_note: str = "", slices: Slices | None = None) -> dict[str, Any]:
    model = _onnx().load(str(tmp), load_external_data=False)
    if _quantized_count(model) == 0:
        original = _onnx().load(str(source), load_external_data=False)
        runtime = _runtime_weights(original)
        why = (f"the weights of {runtime[:5]} are computed at run time rather than stored as initializers, so "
               f"there is nothing to quantize; run offline optimization first to fold them into constants "
               f"(preprocess=True, or kit.optimize.graph.ort_optimize(level='basic'))" if runtime else
               f"it has no op ONNX Runtime quantizes here (ops: {sorted(op_types(original))}); check op_types "
               f"and the exclusions")
        raise QuantizationError(f"nothing in {artifact.name} was quantized: {why}")
    check_same_inputs(prepared, model, f"the quantized model {name}", QuantizationError)
    return self_check(prepared, tmp, name, feeds, feeds_note, slices)


# ---------------------------------------------------------------- transforms

def _check_feeds(source: Path, feeds: Mapping[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray] | None, str]:
    """The user's check inputs, validated against the model's real inputs, and how the figures name them."""
    if feeds is None:
        return None, ""
    checked = check_feeds(input_specs(_onnx().load(str(source), load_external_data=False)), feeds)
    return checked, "the given feeds (" + ", ".join(f"{k}{list(v.shape)}" for k, v in checked.items()) + ")"


def quantize_dynamic(artifact: ModelSource, config: DynamicQuantConfig | None = None,
                     out: str | Path | None = None, feeds: Mapping[str, np.ndarray] | None = None,
                     slices: Slices | None = None, **overrides: Any) -> ModelArtifact:
    """Dynamic int8 quantization (``onnxruntime.quantization.quantize_dynamic``) of an artifact or a path.

    ``feeds`` (the user's data) are what the result is checked on against its parent;
    without them, synthetic inputs, and the artifact's metrics say which were used.
    ``slices`` names meaningful parts of outputs, judged on their own (kit.optimize.quality).
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    artifact = as_artifact(artifact)
    config = resolve(DynamicQuantConfig, config, overrides)
    warn_if_slow_int8(config.reduce_range)
    target = _default_out(artifact, config.tag, out)
    name = f"{artifact.name}-{config.tag}"
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory(prefix="kit-quant-") as work:
        source, notes = prepare(artifact, Path(work), config.preprocess)
        exclude = _exclusions(_onnx().load(str(source), load_external_data=False), config.exclude_nodes,
                              config.exclude_op_types)
        checked, note = _check_feeds(source, feeds)
        check = _quantize_into(target, artifact, source, name, "dynamic", lambda src, dst: ort_quantize_dynamic(
            src, dst, weight_type=qtype[config.weight_type], per_channel=config.per_channel,
            reduce_range=config.reduce_range, op_types_to_quantize=list(config.op_types) or None,
            nodes_to_exclude=exclude or None), notes, Path(work).resolve() / "prepared.onnx", checked, note, slices)
    return artifact.derive(target, "quantize_dynamic", name=name, params={**asdict(config), **notes},
                           metrics={**_cpu_note(), **check})


class FeedsReader:
    """A ``CalibrationDataReader`` over real samples, checked against the model's inputs.

    ``data`` is either a mapping of input name to an array of samples (first axis) or a
    sequence of feed dicts. Batches of ``batch_size`` samples are handed out in order.
    """

    def __init__(self, specs: Sequence[TensorSpec], data: Calibration, max_samples: int, batch_size: int) -> None:
        self.specs = tuple(specs)
        batches = list(self._batches(data, max_samples, batch_size))
        if not batches:
            raise InputError(f"calibration data is empty; pass at least one real sample for each input "
                             f"({describe(self.specs)})")
        self.batches = batches
        self.samples = sum(next(iter(b.values())).shape[0] if b else 0 for b in batches)
        self._iter: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    def _batches(self, data: Calibration, max_samples: int, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        fixed = {s.shape[0] for s in self.specs if s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0}
        fixed_batch = fixed.pop() if len(fixed) == 1 else None
        step = fixed_batch or batch_size
        if isinstance(data, Mapping):
            arrays = {k: np.asarray(v) for k, v in data.items()}
            sizes = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
            if len(sizes) > 1:
                raise InputError(f"calibration arrays disagree on the number of samples: "
                                 f"{ {k: a.shape for k, a in arrays.items()} }")
            count = min(sizes.pop() if sizes else 0, max_samples)
            for start in range(0, count - step + 1 if fixed_batch else count, step):
                yield check_feeds(self.specs, {k: a[start:min(start + step, count)] for k, a in arrays.items()})
            return
        taken = 0
        for feeds in data:
            if taken >= max_samples:
                return
            checked = check_feeds(self.specs, feeds)
            taken += next(iter(checked.values())).shape[0] if checked else 1
            yield checked

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def _reader(model, data: Calibration, config: StaticQuantConfig):
    try:
        reader = FeedsReader(input_specs(model), data, config.calibration_samples, config.calibration_batch_size)
    except InputError as exc:
        raise InputError(f"bad calibration data: {exc}") from exc
    return reader  # a CalibrationDataReader by its get_next (the ABC's subclass hook)


def quantize_static(artifact: ModelSource, calibration: Calibration, config: StaticQuantConfig | None = None,
                    out: str | Path | None = None, slices: Slices | None = None, **overrides: Any) -> ModelArtifact:
    """Static quantization calibrated on ``calibration`` (real samples: name -> array, or feed dicts).

    The result is checked against its parent on the first calibration batch (the user's
    data), each of ``slices`` on its own: an output or slice that collapsed is refused.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    artifact = as_artifact(artifact)
    config = resolve(StaticQuantConfig, config, overrides)
    warn_if_slow_int8(config.reduce_range)
    target = _default_out(artifact, config.tag, out)
    name = f"{artifact.name}-{config.tag}"
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.calibration]
    extra = {"CalibPercentile": config.percentile} if config.calibration == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="kit-quant-") as work:
        source, notes = prepare(artifact, Path(work), config.preprocess)
        model = _onnx().load(str(source), load_external_data=False)
        reader = _reader(model, calibration, config)
        exclude = _exclusions(model, config.exclude_nodes, config.exclude_op_types)
        fmt = QuantFormat.QDQ if config.format == "qdq" else QuantFormat.QOperator
        first = reader.batches[0]
        note = "the first calibration batch (" + ", ".join(f"{k}{list(v.shape)}" for k, v in first.items()) + ")"
        check = _quantize_into(target, artifact, source, name, "static", lambda src, dst: ort_quantize_static(
            src, dst, reader, quant_format=fmt, activation_type=qtype[config.activation_type],
            weight_type=qtype[config.weight_type], calibrate_method=method, per_channel=config.per_channel,
            reduce_range=config.reduce_range, op_types_to_quantize=list(config.op_types) or None,
            nodes_to_exclude=exclude or None, extra_options=extra), notes, Path(work).resolve() / "prepared.onnx",
            first, note, slices)
    params = {**asdict(config), **notes, "calibration_samples_used": reader.samples}
    return artifact.derive(target, "quantize_static", name=name, params=params, metrics={**_cpu_note(), **check})


def _split_consumed_outputs(model) -> int:
    """Give each graph output that other nodes also read its own Identity; returns how many.

    ``convert_float_to_float16(keep_io_types=True)`` casts such an output back to float32
    and then feeds that float32 tensor to the float16 consumers, which ONNX Runtime
    rejects (type mismatch); routing the output through an Identity avoids it.
    """
    from onnx import helper

    outputs = {o.name for o in model.graph.output}
    consumed = {i for node in model.graph.node for i in node.input} & outputs
    for name in consumed:
        inner = f"{name}__kit_inner"
        for node in model.graph.node:
            for idx, value in enumerate(node.output):
                if value == name:
                    node.output[idx] = inner
            for idx, value in enumerate(node.input):
                if value == name:
                    node.input[idx] = inner
        model.graph.node.append(helper.make_node("Identity", [inner], [name], name=f"{name}__kit_output"))
    return len(consumed)


_NODE_IN_ERROR = re.compile(r"\b[Nn]ode \(([^)]*)\)")  # "of node (x)", "in node (x)", "Node (x)"


def _all_nodes(model) -> list:
    from kit.optimize.normalize import subgraphs

    return [n for g in (model.graph, *subgraphs(model.graph)) for n in g.node]


def _float32_casts(model) -> list[str]:
    """``Cast(to=FLOAT)`` nodes: onnxconverter-common retypes their outputs to float16 but not their ``to``,
    which ONNX Runtime rejects ("Type (tensor(float16)) of output arg ... does not match expected type")."""
    return [n.name for n in _all_nodes(model) if n.op_type == "Cast"
            and any(a.name == "to" and a.i == _onnx().TensorProto.FLOAT for a in n.attribute)]


def _sort_subgraphs(model) -> None:
    """Topologically sort every subgraph's nodes, in place.

    onnxconverter-common appends the casts it inserts at the end of a graph and sorts only
    the main graph, so a blocked node inside an ``If`` branch leaves the branch unsorted
    ("Nodes in a graph must be topologically sorted"). Names a graph does not produce come
    from the outer scope and are always available.
    """
    from onnx import AttributeProto

    from kit.optimize.normalize import subgraphs, used_names

    def needs(node) -> set[str]:  # inputs, and what the node's own subgraphs read from this scope
        names = {i for i in node.input if i}
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)):
                names |= used_names(sub)
        return names

    for graph in subgraphs(model.graph):
        nodes = list(graph.node)
        produced = {o for n in nodes for o in n.output}
        wants = [needs(n) & produced for n in nodes]
        ready: set[str] = set()
        pending, ordered = list(range(len(nodes))), []
        while pending:
            rest = [i for i in pending if not wants[i] <= ready]
            done = [i for i in pending if wants[i] <= ready]
            if not done:  # a cycle: leave the rest as it was, ONNX Runtime will name it
                ordered += rest
                break
            for i in done:
                ready.update(nodes[i].output)
            ordered += done
            pending = rest
        nodes = [copy.deepcopy(nodes[i]) for i in ordered]
        del graph.node[:]
        graph.node.extend(nodes)


def _float16_count(model) -> int:
    """float16 weights (initializers and ``Constant`` values) in every graph: zero means nothing was converted."""
    from kit.optimize.normalize import subgraphs

    fp16 = _onnx().TensorProto.FLOAT16
    graphs = (model.graph, *subgraphs(model.graph))
    return (sum(1 for g in graphs for i in g.initializer if i.data_type == fp16)
            + sum(1 for g in graphs for n in g.node if n.op_type == "Constant"
                  for a in n.attribute if a.t.data_type == fp16))


def _failing_op(model, message: str, blocked: Mapping[str, list[str]]) -> str | None:
    """The op type to keep in float32 next: of the innermost node an ONNX Runtime type error names
    (subgraphs included; inserted casts carry their node's name), or, when that op type is already
    kept, of the node enclosing it (an ``If`` error names the ``If`` and then its branch's node)."""
    nodes = _all_nodes(model)
    for wanted in reversed(_NODE_IN_ERROR.findall(message)):
        named = sorted((n for n in nodes if n.name and wanted.startswith(n.name)), key=lambda n: len(n.name),
                       reverse=True)
        if not named:
            continue
        op = named[0].op_type
        if op not in blocked or not {n.name for n in nodes if n.op_type == op} <= set(blocked[op]):
            return op
    return None


def to_float16(artifact: ModelSource, config: Float16Config | None = None, out: str | Path | None = None,
               feeds: Mapping[str, np.ndarray] | None = None, slices: Slices | None = None,
               **overrides: Any) -> ModelArtifact:
    """float16 conversion (``onnxconverter_common.float16``) of an artifact or a path, float32 I/O kept by default.

    Op types that break the conversion stay in float32 and the lineage says which
    (``float32_op_types``): ``Cast(to=FLOAT)`` nodes always (blocked by node, since putting
    ``Cast`` in the converter's ``op_block_list`` makes it loop forever on the casts it
    inserts), and any op type a failed load names, retried a few times. The result is
    checked against its float32 parent on ``feeds`` (or synthetic inputs) and refused if it
    returns NaN/inf where the parent does not (DESIGN.md §6).
    """
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        from kit.errors import MissingDependencyError

        raise MissingDependencyError("onnxconverter-common", "float16 conversion") from exc
    artifact = as_artifact(artifact)
    config = resolve(Float16Config, config, overrides)
    target = _default_out(artifact, config.tag, out)
    name = f"{artifact.name}-{config.tag}"
    with tempfile.TemporaryDirectory(prefix="kit-fp16-") as work:
        source, notes = prepare(artifact, Path(work), preprocess=False)
        onnx = _onnx()
        model = onnx.load(str(source))
        checked, note = _check_feeds(source, feeds)
        nodes = _exclusions(model, config.exclude_nodes, config.exclude_op_types)  # before the added Identities
        if _split_consumed_outputs(model):
            notes["outputs_split"] = True
        casts = _float32_casts(model)
        blocked: dict[str, list[str]] = {"Cast": casts} if casts else {}
        with atomic_output(target) as tmp:
            for _ in range(4):
                extra = [n for names in blocked.values() for n in names]
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # "value truncated" chatter: quality is checked below
                        converted = float16.convert_float_to_float16(
                            copy.deepcopy(model), keep_io_types=config.keep_io_types,
                            node_block_list=list(dict.fromkeys(nodes + extra)) or None)
                except Exception as exc:
                    raise QuantizationError(f"float16 conversion of {artifact.name} failed: {first_line(exc)}; "
                                            f"kept in float32: {sorted(blocked) or 'nothing'}; exclude the op "
                                            f"types involved (exclude_op_types=...)") from exc
                _sort_subgraphs(converted)
                converted.ir_version = min(converted.ir_version, MAX_IR_VERSION)
                onnx.save(converted, str(tmp))
                try:
                    verify(tmp, name, checked)
                    break
                except QuantizationError as exc:
                    op = _failing_op(model, str(exc), blocked)
                    if op is None:
                        raise QuantizationError(f"{exc}; kept in float32: {sorted(blocked) or 'nothing'}") from exc
                    blocked[op] = [n.name for n in _all_nodes(model) if n.op_type == op]
                    log.info("float16 conversion of %s: keeping %s nodes in float32 (%s)", artifact.name, op,
                             first_line(exc))
            else:
                raise QuantizationError(f"float16 conversion of {artifact.name} still does not load with "
                                        f"{sorted(blocked)} kept in float32; exclude more op types "
                                        f"(exclude_op_types=...) or keep this model in float32")
            if blocked:
                notes["float32_op_types"] = sorted(blocked)
                notes["float32_nodes"] = sum(len(v) for v in blocked.values())
            if not _float16_count(converted):
                raise QuantizationError(f"nothing in {artifact.name} was converted to float16: with "
                                        f"{sorted(blocked) or 'no op types'} kept in float32 (they break the "
                                        f"conversion), every float weight and op stayed float32")
            check = self_check(source, tmp, name, checked, note, slices)
    return artifact.derive(target, "to_float16", name=name, params={**asdict(config), **notes}, metrics=check)


def standard_variants(artifact: ModelSource, calibration: Calibration | None, out_dir: str | Path,
                      calibration_method: str = "minmax", calibration_samples: int = 64,
                      static: bool = True, float16: bool = True) -> list[ModelArtifact]:
    """The variants worth measuring against each other on a CPU, made from ``artifact``.

    Dynamic int8; static QDQ U8S8 (per-tensor and per-channel) and S8S8, and QOperator
    U8S8 (when ``static`` and calibration data are given); float16. Which one wins
    depends on the model and the CPU, so ``evaluate`` them all rather than pick by rule.
    """
    from tqdm.auto import tqdm

    artifact = as_artifact(artifact)
    out_dir = Path(out_dir)
    stem = artifact.name
    jobs: list[tuple[str, Any]] = [("dynamic int8", lambda: quantize_dynamic(
        artifact, out=out_dir / f"{stem}.{DynamicQuantConfig().tag}.onnx"))]
    if static and calibration is not None:
        for options in (dict(), dict(per_channel=True), dict(activation_type="int8"), dict(format="qoperator")):
            config = StaticQuantConfig(calibration=calibration_method, calibration_samples=calibration_samples,
                                       **options)
            jobs.append((f"static {config.tag}", lambda c=config: quantize_static(
                artifact, calibration, c, out=out_dir / f"{stem}.{c.tag}.onnx")))
    if float16:
        jobs.append(("float16", lambda: to_float16(artifact, out=out_dir / f"{stem}.fp16.onnx")))
    variants = []
    for label, job in tqdm(jobs, desc=f"quantizing {stem}", leave=False):
        log.info("making %s of %s", label, stem)
        variants.append(job())
    return variants

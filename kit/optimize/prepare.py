"""Getting a user's ONNX model ready for ONNX Runtime's quantizer, and checking what comes out.

``prepare``: normalize on load (kit.optimize.normalize), upgrade old opsets, pre-process
(retried without symbolic shape inference, then skipped) and note what was tried;
``verify`` / ``self_check``: the variant runs and is judged against its parent
(``kit.optimize.quality.compare``) on the user's data, or on synthetic inputs, said so;
``quiet_ort_quantization``: ORT's prints and scratch files kept out of the user's way;
and the model-inspection helpers the transforms share.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, KitError, QuantizationError, first_line
from kit.optimize.normalize import MAX_IR_VERSION, check_same_inputs, load_onnx, normalize
from kit.optimize.quality import SYNTHETIC_HINT, Slices, check_inputs, compare, padding_masks
from kit.specs import TensorSpec, check_feeds, synthetic_feeds

log = logging.getLogger(__name__)

MIN_OPSET = 13  # QDQ per-channel and most quantized kernels need opset >= 13
_WEIGHT_INPUT = {"MatMul": 1, "Gemm": 1, "Conv": 1, "ConvTranspose": 1, "Attention": 1}


def _tuple(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of non-empty names, got {value!r}")
    return tuple(value)


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
    standard = ("", "ai.onnx", "ai.onnx.ml")
    return sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in standard})


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

# ---------------------------------------------------------------- transforms


SYNTHETIC_NOTE = "synthetic inputs (batch 1, unknown dims 1)"


def check_original(parent: Path, name: str, feeds: Mapping[str, np.ndarray] | None = None,
                   feeds_note: str = "") -> tuple[dict[str, np.ndarray], Mapping[str, np.ndarray], str]:
    """Run the original on the check's inputs (``feeds``, else synthetic ones) before its variant ``name``;
    its outputs, the inputs and what they were. When the original fails there, the inputs are at fault, not
    the conversion, and the error says so (a Paddle OCR export breaks on a made-up width by itself; blaming
    the quantizer sent users after the wrong cause)."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    try:
        with OnnxRuntimeEngine(parent, graph_optimization_level="disable") as ref:
            if feeds is None:
                feeds, feeds_note = synthetic_feeds(ref.input_specs), SYNTHETIC_NOTE
            return ref.predict(feeds), feeds, feeds_note or "the given inputs"
    except KitError as exc:
        hint = f"; {SYNTHETIC_HINT}" if feeds_note == SYNTHETIC_NOTE else ""
        raise QuantizationError(f"the original of {name} does not run on {feeds_note or 'the given inputs'}, so "
                                f"{name} cannot be checked there ({exc}){hint}") from exc


def verify(path: Path, name: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Load ``path`` in ONNX Runtime and run it on ``feeds`` (which its original answered); its outputs,
    or ``QuantizationError``."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    try:
        with OnnxRuntimeEngine(path, name=name, graph_optimization_level="disable") as engine:
            return engine.predict(feeds)
    except KitError as exc:
        raise QuantizationError(f"the quantized model {name} does not run in ONNX Runtime ({exc}); "
                                f"exclude the failing nodes or op types and try again") from exc


def self_check(parent: Path, child: Path, name: str, feeds: Mapping[str, np.ndarray] | None = None,
               feeds_note: str = "", slices: Slices | None = None,
               padding_mask: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Run ``child`` and its ``parent`` on the same inputs and judge the child (kit.optimize.quality).

    Refuses (``QuantizationError``) a child that does not run, lost or reshaped an output,
    or returns NaN/inf where the parent does not: such a variant is broken on any data.
    On the user's data (``feeds`` given), an output or declared slice that collapsed to a
    constant is refused too (e.g. a detector's class scores all 0 after int8). Other quality
    problems are recorded (and logged) but do not refuse, because the check inputs may be
    synthetic and the budget is the user's (``evaluate``); the figures say which inputs were used.
    ``padding_mask`` (mask input -> outputs with a sequence axis, as ``EvalConfig.padding_mask``) compares
    those outputs at real positions only, on the user's feeds (synthetic ones have no real padding).
    """
    real = feeds is not None
    want, feeds, feeds_note = check_original(parent, name, feeds, feeds_note)
    got = verify(child, name, feeds)
    masks = padding_masks(padding_mask, feeds) if real else {}
    report = compare(want, got, slices=slices, scores=False, masks=masks)
    broken = [p for p in report.parts if p.nonfinite or np.isnan(p.rel_error) or (real and p.collapsed)]
    if broken:
        raise QuantizationError(f"the quantized model {name} is broken on {feeds_note}: "
                                f"{broken[0].label}: {broken[0].reason}; keep the op types involved in float32 "
                                f"(exclude_op_types=... / exclude_nodes=...) or keep this model in float32")
    if not report.ok:
        log.warning("%s differs from its parent on %s: %s", name, feeds_note, report.reason)
    return {**report.summary(), "checked_with": feeds_note}


def _finish(artifact: ModelArtifact, tmp: Path, source: Path, name: str, prepared: Path, feeds=None,
            feeds_note: str = "", slices: Slices | None = None,
            padding_mask: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
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
    return self_check(prepared, tmp, name, feeds, feeds_note, slices, padding_mask)


def _check_feeds(model, feeds: Any) -> tuple[dict[str, np.ndarray] | None, str]:
    """The user's check inputs (a dict or a ``kit.data.Dataset``), validated against the real inputs of
    ``model`` (the prepared ``onnx.ModelProto`` the caller already holds), and how the figures name them
    (``checked_with``)."""
    feeds, used = check_inputs(feeds)
    if feeds is None:
        return None, ""
    return check_feeds(input_specs(model), feeds), used


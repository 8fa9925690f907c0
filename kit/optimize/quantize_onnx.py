"""ONNX Runtime quantization (dynamic, static with calibration): artifact in, new artifact with lineage out.

The work is done by ``onnxruntime.quantization``; this module adds what a user needs
around it: typed configs, calibration from real samples checked against the model's
inputs, and one error that says what was tried. Getting the model ready (normalize on
load, opset upgrade, pre-processing retried without symbolic shape inference, then
skipped) and the self-check against the parent on the user's data (or synthetic inputs,
said so) that refuses NaN/inf, lost inputs and collapsed outputs live in
``kit.optimize.prepare``; float16 in ``kit.optimize.float16``. Never a broken file on
disk. Every transform takes a path or an artifact.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact, as_artifact, atomic_output
from kit.config import require_int, resolve
from kit.errors import ConfigError, InputError, KitError, QuantizationError, first_line
from kit.optimize.float16 import to_float16
from kit.optimize.normalize import ModelSource
from kit.optimize.prepare import (
    _check_feeds,
    _cpu_note,
    _default_out,
    _exclusions,
    _finish,
    _hint,
    _onnx,
    _tried,
    _tuple,
    input_specs,
    prepare,
    quiet_ort_quantization,
    warn_if_slow_int8,
)
from kit.optimize.quality import Slices
from kit.specs import TensorSpec, check_feeds, describe

log = logging.getLogger(__name__)

QUANT_TYPES = ("int8", "uint8")
FORMATS = ("qdq", "qoperator")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_SHORT = {"int8": "s8", "uint8": "u8"}

Calibration = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]


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

def _quantize_into(target: Path, artifact: ModelArtifact, source: Path, name: str, kind: str,
                   run: Callable[[str, str], None], notes: dict[str, Any], prepared: Path,
                   feeds: Mapping[str, np.ndarray] | None = None, feeds_note: str = "",
                   slices: Slices | None = None,
                   padding_mask: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
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
        return _finish(artifact, tmp, source, name, prepared, feeds=feeds, feeds_note=feeds_note, slices=slices,
                       padding_mask=padding_mask)

def quantize_dynamic(artifact: ModelSource, config: DynamicQuantConfig | None = None,
                     out: str | Path | None = None, feeds: Mapping[str, np.ndarray] | Any = None,
                     slices: Slices | None = None, padding_mask: Mapping[str, Sequence[str]] | None = None,
                     **overrides: Any) -> ModelArtifact:
    """Dynamic int8 quantization (``onnxruntime.quantization.quantize_dynamic``) of an artifact or a path.

    ``feeds`` (the user's data) are what the result is checked on against its parent;
    without them, synthetic inputs, and the artifact's metrics say which were used.
    ``slices`` names meaningful parts of outputs, judged on their own (kit.optimize.quality);
    ``padding_mask`` (mask input -> outputs) judges those outputs at real tokens only.
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
        model = _onnx().load(str(source), load_external_data=False)
        exclude = _exclusions(model, config.exclude_nodes, config.exclude_op_types)
        checked, note = _check_feeds(model, feeds)
        check = _quantize_into(target, artifact, source, name, "dynamic", lambda src, dst: ort_quantize_dynamic(
            src, dst, weight_type=qtype[config.weight_type], per_channel=config.per_channel,
            reduce_range=config.reduce_range, op_types_to_quantize=list(config.op_types) or None,
            nodes_to_exclude=exclude or None), notes, Path(work).resolve() / "prepared.onnx", checked, note, slices,
            padding_mask)
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
                    out: str | Path | None = None, slices: Slices | None = None,
                    padding_mask: Mapping[str, Sequence[str]] | None = None, **overrides: Any) -> ModelArtifact:
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
            first, note, slices, padding_mask)
    params = {**asdict(config), **notes, "calibration_samples_used": reader.samples}
    return artifact.derive(target, "quantize_static", name=name, params=params, metrics={**_cpu_note(), **check})

def standard_variants(artifact: ModelSource, calibration: Calibration | None, out_dir: str | Path,
                      calibration_method: str = "minmax", calibration_samples: int = 64,
                      static: bool = True, float16: bool = True,
                      failures: dict[str, str] | None = None,
                      padding_mask: Mapping[str, Sequence[str]] | None = None) -> list[ModelArtifact]:
    """The variants worth measuring against each other on a CPU, made from ``artifact``.

    Dynamic int8; static QDQ U8S8 (per-tensor and per-channel) and S8S8, and QOperator
    U8S8 (when ``static`` and calibration data are given); float16. Which one wins
    depends on the model and the CPU, so ``evaluate`` them all rather than pick by rule.
    Every variant is checked on the first calibration sample when there is one (made-up
    inputs guess unknown sizes, and a model that needs real ones then looks broken).
    With ``failures`` (a dict), a variant that cannot be made is left out and its one-line
    reason recorded there under its label; without it the first failure raises. ``padding_mask``
    (mask input -> outputs) has each self-check judge those outputs at real tokens only.
    """
    from tqdm.auto import tqdm

    artifact = as_artifact(artifact)
    out_dir = Path(out_dir)
    stem = artifact.name
    first = None
    if calibration is not None:
        first = calibration if isinstance(calibration, Mapping) else next(iter(calibration), None)
    jobs: list[tuple[str, Any]] = [("dynamic int8", lambda: quantize_dynamic(
        artifact, out=out_dir / f"{stem}.{DynamicQuantConfig().tag}.onnx", feeds=first, padding_mask=padding_mask))]
    if static and calibration is not None:
        for options in (dict(), dict(per_channel=True), dict(activation_type="int8"), dict(format="qoperator")):
            config = StaticQuantConfig(calibration=calibration_method, calibration_samples=calibration_samples,
                                       **options)
            jobs.append((f"static {config.tag}", lambda c=config: quantize_static(
                artifact, calibration, c, out=out_dir / f"{stem}.{c.tag}.onnx", padding_mask=padding_mask)))
    if float16:
        jobs.append(("float16", lambda: to_float16(artifact, out=out_dir / f"{stem}.fp16.onnx", feeds=first,
                                                   padding_mask=padding_mask)))
    variants = []
    for label, job in tqdm(jobs, desc=f"quantizing {stem}", leave=False):
        log.info("making %s of %s", label, stem)
        try:
            variants.append(job())
        except QuantizationError as exc:
            if failures is None:
                raise
            failures[label] = first_line(exc)
    return variants

"""TFLite post-training quantization of a SavedModel: artifact in, ``.tflite`` artifact out.

``tf.lite.TFLiteConverter`` does the work; the four modes are its documented recipes:

* ``dynamic_range``: int8 weights, float activations (no data needed);
* ``float16``: float16 weights (dequantized on CPU);
* ``full_integer``: int8 weights and activations *and* int8 inputs/outputs, calibrated
  on a representative dataset of real samples; fails if any op has no int8 kernel;
* ``integer_float_fallback``: int8 where possible, float where not, float I/O.

The representative samples are checked against the signature's inputs first, so wrong
shapes or empty data fail with a message naming what the model expects, and the written
model is loaded and run once before it is returned.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit._quiet import silenced_stderr
from kit.artifacts import ModelArtifact, atomic_output
from kit.config import require_int, resolve
from kit.engines.savedmodel_signature import read_signature
from kit.errors import ConfigError, InputError, KitError, QuantizationError, first_line
from kit.specs import TensorSpec, check_feeds, describe

log = logging.getLogger(__name__)

TFLITE_MODES = ("dynamic_range", "float16", "full_integer", "integer_float_fallback")
_NEEDS_DATA = ("full_integer", "integer_float_fallback")


@dataclass(frozen=True)
class TFLiteQuantConfig:
    """Which PTQ recipe, on which signature, with how many representative samples."""

    mode: str = "dynamic_range"
    signature: str = "serving_default"
    representative_samples: int = 100

    def __post_init__(self) -> None:
        if self.mode not in TFLITE_MODES:
            raise ConfigError(f"mode must be one of {TFLITE_MODES}, got {self.mode!r}")
        require_int("representative_samples", self.representative_samples)


def _samples(specs: tuple[TensorSpec, ...], data: Mapping[str, np.ndarray] | None,
             limit: int) -> list[dict[str, np.ndarray]]:
    """One feed dict per sample (batch 1), checked against ``specs``."""
    expected = describe(specs)
    if data is None:
        raise InputError(f"this mode needs representative data: real samples for {expected}")
    arrays = {k: np.asarray(v) for k, v in data.items()}
    counts = {a.shape[0] if a.ndim else 0 for a in arrays.values()}
    if not arrays or counts == {0}:
        raise InputError(f"representative data is empty; pass at least one real sample for {expected}")
    if len(counts) != 1:
        raise InputError(f"representative arrays disagree on the number of samples: "
                         f"{ {k: a.shape for k, a in arrays.items()} }")
    count = min(counts.pop(), limit)
    samples = [{k: a[i:i + 1] for k, a in arrays.items()} for i in range(count)]
    try:
        check_feeds(specs, samples[0])
    except InputError as exc:
        raise InputError(f"bad representative data: {exc}") from exc
    return samples


def quantize_tflite(artifact: ModelArtifact, representative: Mapping[str, np.ndarray] | None = None,
                    config: TFLiteQuantConfig | None = None, out: str | Path | None = None,
                    **overrides: Any) -> ModelArtifact:
    """Post-training quantization of a SavedModel signature to ``.tflite`` in ``config.mode``."""
    from kit.engines.tensorflow import import_tensorflow

    config = resolve(TFLiteQuantConfig, config, overrides)
    if artifact.format != "savedmodel":
        raise QuantizationError(f"{artifact.name} is a {artifact.format} model; TFLite quantization converts a "
                                f"SavedModel (use kit.zoo.get_model(..., format='savedmodel') or export one)")
    tf = import_tensorflow()
    samples: list[dict[str, np.ndarray]] = []
    if config.mode in _NEEDS_DATA:
        samples = _samples(read_signature(artifact.path, config.signature)[0], representative,
                           config.representative_samples)

    def dataset() -> Iterator[dict[str, np.ndarray]]:
        yield from samples

    target = Path(out) if out else artifact.path.parent / f"{artifact.name}.{config.mode}.tflite"
    with atomic_output(target) as tmp:
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(artifact.path),
                                                                 signature_keys=[config.signature])
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if config.mode == "float16":
                converter.target_spec.supported_types = [tf.float16]
            if config.mode in _NEEDS_DATA:
                converter.representative_dataset = dataset
            if config.mode == "full_integer":
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # calibration uses the deprecated tf.lite.Interpreter internally
                with silenced_stderr():  # the converter prints calibration chatter to fd 2
                    tmp.write_bytes(converter.convert())
        except Exception as exc:
            hint = ("some op has no int8 kernel: use mode='integer_float_fallback'" if config.mode == "full_integer"
                    else "check the signature and that its ops are TFLite builtins")
            first = first_line(exc)
            raise QuantizationError(f"TFLite {config.mode} conversion of {artifact.name} failed: {first}; "
                                    f"{hint}") from exc
        _verify(tmp, artifact.name, samples[0] if samples else None)
    params = {"mode": config.mode, "signature": config.signature,
              "representative_samples_used": len(samples), "tensorflow": tf.__version__}
    return artifact.derive(target, f"tflite_{config.mode}", name=f"{artifact.name}-tflite-{config.mode}",
                           format="tflite", params=params)


def _verify(path: Path, name: str, sample: dict[str, np.ndarray] | None) -> None:
    from kit.engines.tflite import TFLiteEngine
    from kit.specs import synthetic_feeds

    try:
        with TFLiteEngine(path, name=name) as engine:
            feeds = sample if sample is not None else synthetic_feeds(engine.input_specs)
            engine.predict({k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in feeds.items()})
    except KitError as exc:
        raise QuantizationError(f"the quantized TFLite model of {name} does not run ({exc})") from exc

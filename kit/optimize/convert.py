"""SavedModel -> ONNX and SavedModel -> TFLite, each checked against its source.

A conversion is an artifact -> artifact function: the result carries its parent, the
conversion's parameters and how well its outputs agree with the source (``quality.compare``:
max abs error, cosine, NaN/inf) on the user's feeds or ``Dataset`` when given, else on
synthetic inputs; ``metrics["checked_with"]`` says which. A conversion that disagrees beyond tolerance raises
``ConversionError``: a model that runs but answers differently is worse than none.

Keras 3 models go through a SavedModel first (``model.export(dir)``):
``tf2onnx.convert.from_keras`` fails on Keras 3 (DESIGN.md §6).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kit._quiet import silenced_stderr
from kit.artifacts import ModelArtifact, atomic_output
from kit.errors import ConversionError, KitError, MissingDependencyError, first_line
from kit.optimize.normalize import MAX_IR_VERSION
from kit.optimize.quality import SYNTHETIC_HINT, Gate, check_inputs, compare
from kit.specs import check_feeds, synthetic_feeds

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-3
DEFAULT_MIN_COSINE = 0.9999


def _source(model: ModelArtifact | str | os.PathLike[str], expected: str = "savedmodel") -> ModelArtifact:
    art = model if isinstance(model, ModelArtifact) else ModelArtifact.from_path(model)
    if art.format != expected:
        hint = ("export a .keras file with kit.optimize.keras_to_savedmodel first" if expected == "savedmodel"
                else f"expects a .{expected} file")
        raise ConversionError(f"expected a {expected} model, got a {art.format} model ({art.path}); {hint}")
    return art


def check_converted(source: ModelArtifact, target: Path, fmt: str, data: Any, signature: str, atol: float,
                     min_cosine: float) -> dict[str, Any]:
    """Run source and converted model on the same inputs and judge with ``quality.compare``; raise if they disagree.

    ``data`` is the user's feeds or ``kit.data.Dataset`` (synthetic inputs of batch 2 when
    ``None``); the figures say which were used (``checked_with``).
    """
    from kit.engines.tensorflow import TensorFlowEngine

    feeds, used = check_inputs(data)
    with TensorFlowEngine(source, signature=signature) as reference:
        if feeds is None:
            feeds, used = synthetic_feeds(reference.input_specs, batch_size=2), "synthetic inputs (batch 2)"
        else:
            feeds = check_feeds(reference.input_specs, feeds)
        expected = reference.predict(feeds)
    hint_data = f"; the check ran on {used}: {SYNTHETIC_HINT}" if used.startswith("synthetic") else ""
    try:
        if fmt == "onnx":
            from kit.engines.onnxruntime import OnnxRuntimeEngine
            engine = OnnxRuntimeEngine(target)
        else:
            from kit.engines.tflite import TFLiteEngine
            engine = TFLiteEngine(target)
        with engine:
            got = engine.predict(feeds)
    except KitError as exc:
        raise ConversionError(f"the converted {fmt} model does not run: {exc}{hint_data}") from exc
    report = compare(expected, got, gate=Gate(max_rel_error=math.inf, atol=atol, min_cosine=min_cosine),
                     scores=False)
    summary = report.summary()
    result = {"max_abs_error": summary["max_abs_error"], "cosine": summary["min_cosine"],
              "quality_ok": report.ok, "quality": report.reason,
              "agreement_batch": int(next(iter(feeds.values())).shape[0]) if feeds else 0, "checked_with": used}
    if not report.ok:
        # unfrozen Keras 3 variables make the TFLite file read uninitialised memory: NaN on
        # some runs, garbage on others; either way the cure is the same
        hint = ("; for TFLite this often means variables the converter did not freeze: export Keras models "
                "with model.export(dir) / keras.export.ExportArchive" if fmt == "tflite" else
                "; try another opset")
        if any(p.nonfinite for p in report.parts):
            raise ConversionError(f"the {fmt} conversion of {source.name} returns NaN or inf where its source "
                                  f"does not (on {used}){hint}")
        raise ConversionError(f"the {fmt} conversion of {source.name} disagrees with its source on {used}: "
                              f"{report.reason} (tolerance atol {atol:g}, minimum cosine {min_cosine}){hint}; "
                              f"pass atol/min_cosine if the difference is expected{hint_data}")
    return result


def savedmodel_to_onnx(model: ModelArtifact | str | os.PathLike[str], output: str | os.PathLike[str],
                       opset: int = DEFAULT_OPSET, signature: str = "serving_default",
                       feeds: Mapping[str, np.ndarray] | Any = None, atol: float = DEFAULT_ATOL,
                       min_cosine: float = DEFAULT_MIN_COSINE) -> ModelArtifact:
    """Convert a SavedModel signature to ONNX with tf2onnx; names and symbolic batch are kept.

    Uses tf2onnx's SavedModel loader (the route of ``python -m tf2onnx.convert
    --saved-model``), which works with Keras 3 exports. ``feeds`` (a dict or a
    ``kit.data.Dataset``) are the inputs the agreement check runs on (synthetic ones if
    omitted); ``metrics["checked_with"]`` names them.
    """
    source = _source(model)
    from kit.engines.tensorflow import import_tensorflow

    tf = import_tensorflow()
    try:
        import onnx
        from tf2onnx import convert as tf2onnx_convert
        from tf2onnx import tf_loader
    except ImportError as exc:
        raise MissingDependencyError("tf2onnx", "Converting to ONNX") from exc
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    output = Path(output)
    with atomic_output(output) as tmp:
        try:
            graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
                str(source.path), None, None, tag=None, signatures=[signature], concrete_function=None,
                large_model=False, return_initialized_tables=True, return_tensors_to_rename=True)
            with tf.device("/cpu:0"):
                proto, _ = tf2onnx_convert._convert_common(
                    graph_def, name=source.name, opset=opset, input_names=inputs, output_names=outputs,
                    initialized_tables=tables, tensors_to_rename=renames)
        except Exception as exc:
            raise ConversionError(f"tf2onnx could not convert {source.path} (signature {signature!r}, opset "
                                  f"{opset}): {first_line(exc)}; check that the signature exists and try "
                                  f"another opset (13-18)") from exc
        if proto.ir_version > MAX_IR_VERSION:
            proto.ir_version = MAX_IR_VERSION
        for value in [*proto.graph.input, *proto.graph.output]:
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].dim_param:  # tf2onnx names it unk__N; say what it is
                dims[0].dim_param = "batch"
        onnx.save(proto, str(tmp))
        metrics = check_converted(source, tmp, "onnx", feeds, signature, atol, min_cosine)
    params = {"opset": opset, "signature": signature, "tf2onnx": _version("tf2onnx")}
    return source.derive(output, "to_onnx", name=f"{source.name}-onnx", format="onnx", params=params,
                         metrics=metrics)


def savedmodel_to_tflite(model: ModelArtifact | str | os.PathLike[str], output: str | os.PathLike[str],
                         signature: str = "serving_default", feeds: Mapping[str, np.ndarray] | Any = None,
                         atol: float = DEFAULT_ATOL, min_cosine: float = DEFAULT_MIN_COSINE) -> ModelArtifact:
    """Convert a SavedModel signature to a float32 ``.tflite`` with TensorFlow's converter (``feeds``: as for ONNX)."""
    source = _source(model)
    from kit.engines.tensorflow import import_tensorflow

    tf = import_tensorflow()
    output = Path(output)
    with atomic_output(output) as tmp:
        try:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(source.path), signature_keys=[signature])
            with silenced_stderr():  # MLIR converter chatter goes to fd 2
                flatbuffer = converter.convert()
        except Exception as exc:
            raise ConversionError(f"the TFLite converter could not convert {source.path} (signature "
                                  f"{signature!r}): {first_line(exc)}; ops TFLite lacks must be rewritten "
                                  f"with builtin ones") from exc
        tmp.write_bytes(flatbuffer)
        metrics = check_converted(source, tmp, "tflite", feeds, signature, atol, min_cosine)
    params = {"signature": signature, "precision": "float32", "tensorflow": tf.__version__}
    return source.derive(output, "to_tflite", name=f"{source.name}-tflite", format="tflite", params=params,
                         metrics=metrics)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def keras_to_savedmodel(model: ModelArtifact | str | os.PathLike[str], output: str | os.PathLike[str],
                        batch_size: int = 2) -> ModelArtifact:
    """Export a ``.keras`` file as a SavedModel, the format every other route starts from.

    The export is checked by loading it with the TensorFlow engine and comparing its
    answer with the Keras model's on synthetic inputs (single-output models), so a user's
    own ``.keras`` file enters the kit with the same guarantees as the zoo's models.
    """
    source = _source(model, expected="keras")
    from kit.engines.tensorflow import TensorFlowEngine, import_tensorflow

    import_tensorflow()
    import keras

    try:
        keras_model = keras.saving.load_model(str(source.path), compile=False)
    except Exception as exc:
        raise ConversionError(f"Keras could not load {source.path}: {first_line(exc)}; custom layers must be "
                              f"registered with keras.saving.register_keras_serializable") from exc
    output = Path(output)
    with atomic_output(output) as tmp:
        try:
            keras_model.export(str(tmp), verbose=False)
        except Exception as exc:
            raise ConversionError(f"Keras could not export {source.path} as a SavedModel: {first_line(exc)}") from exc
        with TensorFlowEngine(tmp) as engine:
            feeds = synthetic_feeds(engine.input_specs, batch_size=batch_size)
            exported = engine.predict(feeds)
        metrics: dict[str, Any] = {}
        if len(exported) == 1:
            reference = keras_model([feeds[s.name] for s in engine.input_specs]
                                    if len(feeds) > 1 else next(iter(feeds.values())), training=False)
            report = compare({"out": np.asarray(reference)}, {"out": next(iter(exported.values()))},
                             gate=Gate(max_rel_error=math.inf, atol=DEFAULT_ATOL), scores=False)
            metrics = {"max_abs_error": report.summary()["max_abs_error"], "cosine": report.summary()["min_cosine"],
                       "checked_with": f"synthetic inputs (batch {batch_size})"}
            if not report.ok:
                raise ConversionError(f"the SavedModel exported from {source.path} disagrees with the Keras model "
                                      f"({report.reason})")
    return source.derive(output, "to_savedmodel", name=f"{source.name}-savedmodel", format="savedmodel",
                         params={"keras": keras.__version__}, metrics=metrics)

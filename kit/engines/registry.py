"""``create_engine``: one entry point that picks the engine from the model's format."""

from __future__ import annotations

import os
from typing import Any

from kit.artifacts import ModelArtifact, detect_format
from kit.engines.base import PredictorBase
from kit.errors import ConfigError

# model format -> the engine that runs it; each engine takes exactly the formats that map to it
_DEFAULT_ENGINE = {"onnx": "onnxruntime", "savedmodel": "tensorflow", "keras": "tensorflow",
                   "tflite": "tflite", "tfserving": "tfserving"}
ENGINES = tuple(dict.fromkeys(_DEFAULT_ENGINE.values()))
_ENGINE_FORMATS = {e: {f for f, d in _DEFAULT_ENGINE.items() if d == e} for e in ENGINES}


def create_engine(model: str | os.PathLike[str] | ModelArtifact, engine: str | None = None,
                  **options: Any) -> PredictorBase:
    """Load ``model`` with ``engine`` (or the default engine for its format).

    ``options`` go to the engine's constructor: ``OrtOptions`` fields for ONNX Runtime,
    ``signature``/``intra_op_num_threads`` for TensorFlow and TFLite, ``model_name``...
    for TensorFlow Serving. Heavy runtimes are imported only here, on demand.
    """
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    fmt = model.format if isinstance(model, ModelArtifact) else detect_format(model)
    engine = engine or _DEFAULT_ENGINE[fmt]
    if fmt not in _ENGINE_FORMATS[engine]:
        raise ConfigError(f"engine {engine!r} cannot run a {fmt} model; it takes "
                          f"{sorted(_ENGINE_FORMATS[engine])}")
    if engine == "onnxruntime":
        from kit.engines.onnxruntime import OnnxRuntimeEngine
        return OnnxRuntimeEngine(model, **options)
    if engine == "tensorflow":
        from kit.engines.tensorflow import TensorFlowEngine
        return TensorFlowEngine(model, **options)
    if engine == "tflite":
        from kit.engines.tflite import TFLiteEngine
        return TFLiteEngine(model, **options)
    from kit.engines.tfserving import TFServingEngine
    return TFServingEngine(str(model.path if isinstance(model, ModelArtifact) else model), **options)

"""TFLite/LiteRT engine: a signature of ``ai_edge_litert``'s interpreter, float32 at the edges.

* Names come from the model's signature (``image`` -> ``probabilities``), as on every
  other engine, not from TFLite's internal tensor names.
* The batch dimension is dynamic: when a request's shape differs from the last one the
  input is resized and tensors re-allocated; otherwise the interpreter is reused as is.
* int8/uint8-quantized inputs and outputs take and return float32, applying each
  tensor's scale and zero point, so a quantized model is a drop-in replacement; specs
  report float32 for them and ``describe()`` reports the real types.
* The interpreter is not thread-safe, so calls are serialized with a lock.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from kit._quiet import import_tensorflow, silenced_stderr
from kit.artifacts import ModelArtifact
from kit.config import require_int
from kit.engines.base import Feeds, Outputs, PredictorBase
from kit.errors import (
    Closed,
    ConfigError,
    InferenceError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
    first_line,
)
from kit.specs import TensorSpec, check_feeds, describe, fast_path_ok

log = logging.getLogger(__name__)
_CUSTOM_OP = re.compile(r"unresolved custom op: ([\w.\-]+?)\.?(?:\s|$)")


def custom_op_in(message: str) -> str:
    """The custom op an interpreter's load error names ('' when it names none): the one fact a user needs."""
    found = _CUSTOM_OP.search(message)
    return found.group(1) if found else ""


def interpreter_class() -> tuple[type, str]:
    """LiteRT's interpreter, or TensorFlow's deprecated one (with a warning) if LiteRT is missing."""
    try:
        with silenced_stderr():
            from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        tf = import_tensorflow()
    except MissingDependencyError as exc:
        raise MissingDependencyError("ai-edge-litert", "The TFLite engine") from exc
    message = "ai_edge_litert is not installed; using the deprecated tf.lite.Interpreter (pip install ai-edge-litert)"
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    log.warning(message)
    return tf.lite.Interpreter, "tf.lite"


class _Port:
    """One input or output of the signature: its tensor index and (de)quantization."""

    def __init__(self, name: str, detail: dict[str, Any]) -> None:
        self.name = name
        self.index = int(detail["index"])
        self.dtype = np.dtype(detail["dtype"])
        signature = detail.get("shape_signature", detail["shape"])
        self.shape = tuple(None if int(d) < 0 else int(d) for d in signature)
        scale, zero_point = detail.get("quantization", (0.0, 0))
        self.quantized = self.dtype in (np.int8, np.uint8) and scale != 0.0
        self.scale, self.zero_point = float(scale), int(zero_point)
        self.spec = TensorSpec(name, np.float32 if self.quantized else self.dtype, self.shape)

    def quantize(self, value: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return value
        info = np.iinfo(self.dtype)
        q = np.round(np.asarray(value, np.float32) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, value: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return value
        return ((value.astype(np.float32) - self.zero_point) * self.scale).astype(np.float32)

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"name": self.name, "dtype": self.dtype.name, "shape": list(self.shape)}
        if self.quantized:
            rec.update(scale=self.scale, zero_point=self.zero_point)
        return rec


class TFLiteEngine(PredictorBase):
    """A Predictor over one signature of a ``.tflite`` model."""

    def __init__(self, model: str | os.PathLike[str] | ModelArtifact, intra_op_num_threads: int | None = None,
                 signature: str | None = None, name: str | None = None) -> None:
        # The interpreter's ``num_threads`` is its intra-op thread count; the kit calls it so everywhere.
        require_int("intra_op_num_threads", intra_op_num_threads, allow_none=True)
        path = model.path if isinstance(model, ModelArtifact) else Path(model)
        if not path.is_file():
            raise ModelLoadError(f"TFLite model not found: {path}" if not path.exists() else
                                 f"{path} is a directory; the TFLite engine expects a .tflite file")
        self.path = path
        self.name = name or (model.name if isinstance(model, ModelArtifact) else path.stem)
        self.intra_op_num_threads = intra_op_num_threads
        cls, self.runtime = interpreter_class()
        try:
            with silenced_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2
                self._interp = cls(model_path=str(path), num_threads=intra_op_num_threads)
                self._interp.allocate_tensors()
        except Exception as exc:
            op = custom_op_in(str(exc))
            if op:
                raise ModelLoadError(f"{path.name} needs the TFLite custom op {op!r}, which {self.runtime} does not "
                                     f"provide: build the interpreter with that op registered, or export the model "
                                     f"without it") from exc
            raise ModelLoadError(f"{self.runtime} could not load {path}: {first_line(exc)}") from exc
        signatures = self._interp.get_signature_list()
        if signature is None and len(signatures) > 1:
            raise ConfigError(f"{path} has several signatures {sorted(signatures)}; pass signature=...")
        if signature is not None and signature not in signatures:
            raise ModelLoadError(f"{path} has no signature {signature!r}; available signatures: "
                                 f"{sorted(signatures) or 'none'}")
        self.signature = signature or (next(iter(signatures)) if signatures else None)
        runner = None
        if self.signature is None:  # a model without signatures: use the tensors' own names
            ins = {d["name"]: d for d in self._interp.get_input_details()}
            outs = {d["name"]: d for d in self._interp.get_output_details()}
        else:
            runner = self._interp.get_signature_runner(self.signature)
            ins, outs = runner.get_input_details(), runner.get_output_details()
        self._inputs = [_Port(n, d) for n, d in ins.items()]
        self._outputs = [_Port(n, d) for n, d in outs.items()]
        # Single-signature models keep their signature in subgraph 0, where the index API applies;
        # a live signature runner holds the interpreter's internals, which blocks that API, so only
        # several-signature models keep theirs.
        self._index_api = len(signatures) <= 1
        self._runner = None if self._index_api else runner
        self._input_specs = tuple(p.spec for p in self._inputs)
        self._output_specs = tuple(p.spec for p in self._outputs)
        self._input_names = frozenset(p.name for p in self._inputs)
        self._shapes: dict[int, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def _run(self, feeds: Feeds) -> Outputs:
        interp = self._interp
        if interp is None:
            raise Closed(f"engine {self.name!r} is closed")
        values = {p.name: p.quantize(feeds[p.name]) for p in self._inputs}
        with self._lock:
            if not self._index_api:
                raw = self._runner(**values)
                return {p.name: p.dequantize(raw[p.name]) for p in self._outputs}
            resized = False
            for port in self._inputs:
                shape = values[port.name].shape
                if self._shapes.get(port.index) != shape:
                    if not resized:  # a new shape: check it, since resizing accepts any rank
                        check_feeds(self._input_specs, feeds)
                    interp.resize_tensor_input(port.index, list(shape), strict=False)
                    self._shapes[port.index] = shape
                    resized = True
            if resized:
                interp.allocate_tensors()
            for port in self._inputs:
                interp.set_tensor(port.index, values[port.name])
            interp.invoke()
            return {p.name: p.dequantize(interp.get_tensor(p.index)) for p in self._outputs}

    def predict(self, feeds: Feeds) -> Outputs:
        if not fast_path_ok(feeds, self._input_names):
            if self._interp is None:
                raise Closed(f"engine {self.name!r} is closed")
            feeds = check_feeds(self._input_specs, feeds)  # byte order, lists, empty batch: as every engine
        try:
            return self._run(feeds)
        except Closed:
            raise
        except Exception as exc:  # slow path: explain bad inputs, else report the failure
            with self._lock:
                self._shapes.clear()  # a failed resize leaves the interpreter's shapes unknown
            arrays = check_feeds(self._input_specs, feeds)
            if any(arrays[k] is not feeds[k] for k in arrays):  # lists or byte order converted: run again
                return self.predict(arrays)
            message = first_line(exc)
            if isinstance(exc, (ValueError, KeyError)):
                raise InputError(f"{self.runtime} refused the inputs of {self.name!r}: {message}; the model "
                                 f"expects {describe(self._input_specs)}") from exc
            raise InferenceError(f"{self.runtime} failed on {self.name!r}: {message}") from exc

    def _close(self) -> None:
        with self._lock:
            self._runner = None
            self._interp = None

    def describe(self) -> dict[str, Any]:
        return {"predictor": type(self).__name__, "engine": "tflite", "runtime": self.runtime, "name": self.name,
                "signature": self.signature, "intra_op_num_threads": self.intra_op_num_threads,
                "inputs": [p.record() for p in self._inputs], "outputs": [p.record() for p in self._outputs]}

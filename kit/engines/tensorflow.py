"""TensorFlow SavedModel engine: one signature of ``tf.saved_model.load``, numpy in and out.

TensorFlow reads its thread-pool sizes once, when its runtime first starts; asking for
other sizes later is silently impossible, so the engine refuses with ``ConfigError``
instead of measuring something other than what was asked for.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kit._quiet import import_tensorflow  # noqa: E402,F401  (re-exported for callers)
from kit.artifacts import ModelArtifact
from kit.config import require_int
from kit.engines.base import Feeds, Outputs, PredictorBase
from kit.engines.savedmodel_signature import read_signature
from kit.errors import Closed, ConfigError, InferenceError, InputError, ModelLoadError, first_line
from kit.specs import check_feeds, describe

log = logging.getLogger(__name__)


def configure_threads(intra_op_num_threads: int | None, inter_op_num_threads: int | None) -> None:
    """Set TensorFlow's thread pools, or raise ``ConfigError`` if TF already started others."""
    counts = (("intra_op_num_threads", intra_op_num_threads), ("inter_op_num_threads", inter_op_num_threads))
    for label, value in counts:
        require_int(label, value, 0, hint=" (0 lets TensorFlow choose)", allow_none=True)
    if intra_op_num_threads is None and inter_op_num_threads is None:
        return
    tf = import_tensorflow()
    threading = tf.config.threading
    for label, value, getter, setter in (
            ("intra_op_num_threads", intra_op_num_threads, threading.get_intra_op_parallelism_threads,
             threading.set_intra_op_parallelism_threads),
            ("inter_op_num_threads", inter_op_num_threads, threading.get_inter_op_parallelism_threads,
             threading.set_inter_op_parallelism_threads)):
        if value is None or getter() == value:
            continue
        try:
            setter(value)
        except RuntimeError as exc:
            raise ConfigError(
                f"cannot set TensorFlow {label}={value}: TensorFlow already started in this process with "
                f"intra_op={threading.get_intra_op_parallelism_threads()}, "
                f"inter_op={threading.get_inter_op_parallelism_threads()}; thread settings must be applied "
                f"before TensorFlow is first used (create this engine first, or restart the kernel)") from exc


class TensorFlowEngine(PredictorBase):
    """A Predictor over one signature of a SavedModel (``tf.saved_model.load``)."""

    def __init__(self, model: str | os.PathLike[str] | ModelArtifact, signature: str = "serving_default",
                 intra_op_num_threads: int | None = None, inter_op_num_threads: int | None = None,
                 name: str | None = None) -> None:
        configure_threads(intra_op_num_threads, inter_op_num_threads)
        tf = import_tensorflow()
        self._tf = tf
        path = model.path if isinstance(model, ModelArtifact) else Path(model)
        if not path.exists():
            raise ModelLoadError(f"SavedModel not found: {path}")
        if path.suffix == ".keras":
            raise ModelLoadError(f"{path} is a Keras file; the TensorFlow engine serves SavedModels: export it "
                                 f"with kit.optimize.keras_to_savedmodel({str(path)!r}, dir) and load that directory")
        if not path.is_dir() or not ((path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()):
            raise ModelLoadError(f"{path} is not a SavedModel directory (no saved_model.pb); the TensorFlow "
                                 f"engine expects the directory written by model.export / tf.saved_model.save")
        self.path = path
        self.name = name or (model.name if isinstance(model, ModelArtifact) else path.name)
        self.signature = signature
        self.intra_op_num_threads, self.inter_op_num_threads = intra_op_num_threads, inter_op_num_threads
        try:
            self._loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelLoadError(f"TensorFlow could not load the SavedModel {path}: "
                                 f"{first_line(exc)}") from exc
        available = sorted(self._loaded.signatures.keys())
        if signature not in available:
            raise ModelLoadError(f"SavedModel {path} has no signature {signature!r}; available signatures: "
                                 f"{available or 'none (re-export it with a serving signature)'}")
        self._fn = self._loaded.signatures[signature]
        self._input_specs, self._output_specs = read_signature(path, signature)

    def predict(self, feeds: Feeds) -> Outputs:
        fn = self._fn
        if fn is None:
            raise Closed(f"engine {self.name!r} is closed")
        # Checked on every call: a signature would silently cast float64 to float32, which
        # the other engines refuse; the check costs microseconds against TF's call overhead.
        arrays = check_feeds(self._input_specs, feeds)
        try:
            result = fn(**arrays)
        except self._tf.errors.OpError as exc:
            raise InferenceError(f"TensorFlow failed on {self.name!r}: {first_line(exc)}") from exc
        except (TypeError, ValueError) as exc:
            raise InputError(f"TensorFlow refused the inputs of {self.name!r}: {first_line(exc)}; "
                             f"the model expects {describe(self._input_specs)}") from exc
        return {k: v.numpy() for k, v in result.items()}

    def _close(self) -> None:
        self._fn = None
        self._loaded = None

    def describe(self) -> dict[str, Any]:
        threading = self._tf.config.threading
        return {"predictor": type(self).__name__, "engine": "tensorflow", "name": self.name,
                "signature": self.signature, "tensorflow": self._tf.__version__,
                "devices": [d.name for d in self._tf.config.list_logical_devices()],
                "intra_op_num_threads": threading.get_intra_op_parallelism_threads(),
                "inter_op_num_threads": threading.get_inter_op_parallelism_threads()}

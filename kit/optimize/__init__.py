"""Optimizations as functions from artifact to artifact, each result carrying its lineage.

``convert``: SavedModel -> ONNX / TFLite with an agreement check against the source.
TensorFlow and tf2onnx are imported only when a conversion runs.
"""

from kit.optimize.convert import agreement, keras_to_savedmodel, savedmodel_to_onnx, savedmodel_to_tflite

__all__ = ["agreement", "keras_to_savedmodel", "savedmodel_to_onnx", "savedmodel_to_tflite"]

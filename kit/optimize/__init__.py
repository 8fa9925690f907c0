"""Optimizations as functions from artifact to artifact, each result carrying its lineage.

``convert``: Keras/SavedModel -> ONNX / TFLite with an agreement check against the source;
``quantize_onnx`` / ``float16`` / ``quantize_tflite``: post-training quantization; ``graph``:
onnxoptimizer passes and ONNX Runtime's offline optimization; ``normalize``: a user's model
made fit for them once, on load; ``quality``: the one output comparison (``compare``, per
output and per slice, gated); ``evaluate``: every variant's size, speed and quality side by
side, and the pick within the quality gate and beyond the measured noise.
TensorFlow, tf2onnx and ONNX Runtime are imported only when a transform runs.
"""

from kit.optimize.convert import keras_to_savedmodel, savedmodel_to_onnx, savedmodel_to_tflite
from kit.optimize.evaluate import EvalConfig, Recommendation, evaluate, pareto_front, recommend
from kit.optimize.fallback import quantize_dynamic_within
from kit.optimize.float16 import Float16Config, to_float16
from kit.optimize.graph import PassConfig, apply_passes, graph_diff, graph_summary, op_histogram, ort_optimize
from kit.optimize.normalize import normalize
from kit.optimize.quality import EQUIVALENT, Gate, QualityReport, Slice, compare
from kit.optimize.quantize_onnx import (
           DynamicQuantConfig,
           StaticQuantConfig,
           quantize_dynamic,
           quantize_static,
           standard_variants,
)
from kit.optimize.quantize_tflite import TFLiteQuantConfig, quantize_tflite

__all__ = ["EQUIVALENT", "DynamicQuantConfig", "EvalConfig", "Float16Config", "Gate", "PassConfig",
           "QualityReport", "Recommendation", "Slice", "StaticQuantConfig", "TFLiteQuantConfig", "apply_passes",
           "compare", "evaluate", "graph_diff", "graph_summary", "keras_to_savedmodel", "normalize",
           "op_histogram", "ort_optimize", "pareto_front", "quantize_dynamic", "quantize_dynamic_within",
           "quantize_static", "quantize_tflite", "recommend", "savedmodel_to_onnx", "savedmodel_to_tflite",
           "standard_variants", "to_float16"]

"""Optimizations as functions from artifact to artifact, each result carrying its lineage.

``convert``: Keras/SavedModel -> ONNX / TFLite with an agreement check against the source;
``quantize_onnx`` / ``quantize_tflite``: post-training quantization; ``graph``:
onnxoptimizer passes and ONNX Runtime's offline optimization; ``evaluate``: every variant's
size, speed and quality side by side, and the pick within an accuracy budget.
TensorFlow, tf2onnx and ONNX Runtime are imported only when a transform runs.
"""

from kit.optimize.convert import agreement, keras_to_savedmodel, savedmodel_to_onnx, savedmodel_to_tflite
from kit.optimize.evaluate import EvalConfig, Recommendation, evaluate, pareto_front, recommend
from kit.optimize.graph import PassConfig, apply_passes, graph_diff, graph_summary, op_histogram, ort_optimize
from kit.optimize.quantize_onnx import (DynamicQuantConfig, Float16Config, StaticQuantConfig, quantize_dynamic,
                                        quantize_static, standard_variants, to_float16)
from kit.optimize.quantize_tflite import TFLiteQuantConfig, quantize_tflite

__all__ = ["DynamicQuantConfig", "EvalConfig", "Float16Config", "PassConfig", "Recommendation",
           "StaticQuantConfig", "TFLiteQuantConfig", "agreement", "apply_passes", "evaluate", "graph_diff",
           "graph_summary", "keras_to_savedmodel", "op_histogram", "ort_optimize", "pareto_front",
           "quantize_dynamic", "quantize_static", "quantize_tflite", "recommend", "savedmodel_to_onnx",
           "savedmodel_to_tflite", "standard_variants", "to_float16"]

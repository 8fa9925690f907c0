"""Engines: ONNX Runtime, TensorFlow SavedModel, TFLite/LiteRT and TF Serving, all Predictors."""

from kit.engines.base import Predictor, PredictorBase, Wrapper
from kit.engines.registry import ENGINES, create_engine

__all__ = ["ENGINES", "Predictor", "PredictorBase", "Wrapper", "create_engine"]

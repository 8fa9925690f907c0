"""kit: deploy ML models and make their inference fast, in notebooks and headless.

Heavy runtimes (TensorFlow, ONNX Runtime) are imported only by the modules that use
them, so ``import kit`` is fast and works with either engine missing.
"""

from kit import _quiet  # noqa: F401  (must run before TensorFlow is imported)
from kit.artifacts import ModelArtifact, lineage_frame
from kit.engines import Predictor, PredictorBase, Wrapper, create_engine
from kit.errors import (CircuitOpen, Closed, ConfigError, ConversionError, DeadlineExceeded, InferenceError,
                        InputError, KitError, MissingDependencyError, ModelLoadError, Overloaded,
                        ProviderUnavailableError, QuantizationError, ServingError)
from kit.profile import ProfileConfig, ProfileResult, compare, environment, profile, results_frame
from kit.report import interactive, publish
from kit.specs import TensorSpec, check_feeds, synthetic_feeds

__version__ = "0.1.0"

__all__ = sorted([
    "CircuitOpen", "Closed", "ConfigError", "ConversionError", "DeadlineExceeded", "InferenceError",
    "InputError", "KitError", "MissingDependencyError", "ModelArtifact", "ModelLoadError", "Overloaded",
    "Predictor", "PredictorBase", "ProfileConfig", "ProfileResult", "ProviderUnavailableError",
    "QuantizationError", "ServingError", "TensorSpec", "Wrapper", "check_feeds", "compare",
    "create_engine", "environment", "interactive", "lineage_frame", "profile", "publish",
    "results_frame", "synthetic_feeds", "__version__",
])

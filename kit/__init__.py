"""kit: deploy ML models and make their inference fast, in notebooks and headless.

The subpackages hold the vocabulary: ``kit.engines`` (runtimes behind one Predictor interface),
``kit.optimize`` (artifact -> artifact), ``kit.profile`` (measuring), ``kit.serve`` (request-path
wrappers), ``kit.loading`` (loading engines fast), ``kit.tfserving`` (TF Serving's deployment side),
``kit.export`` (bundles a server loads), ``kit.tune``, ``kit.zoo`` (built-in and pretrained models),
``kit.report`` (papermill, HTML). ``kit.models`` resolves a user's model, ``kit.data`` their inputs.
The names below are the ones a notebook reaches for first. Heavy runtimes (TensorFlow, ONNX Runtime,
Optuna, gRPC) are imported only by the functions that use them, so ``import kit`` is fast and works
with either engine missing. ``docs/conventions.md`` lists the rooms and the one name of each idea.
"""

from kit import (  # noqa: F401
                        _quiet,  # noqa: F401  (must run before TensorFlow is imported)
                        engines,
                        loading,
                        optimize,
                        profile,
                        report,
                        serve,
                        tfserving,
                        tune,
                        zoo,
)
from kit.artifacts import ModelArtifact, lineage_frame
from kit.data import Dataset, load_data
from kit.engines import Predictor, PredictorBase, Wrapper, create_engine
from kit.engines.onnxruntime import OnnxRuntimeEngine, OrtOptions
from kit.engines.providers import discover_providers
from kit.engines.tfserving import TFServingEngine
from kit.errors import (
                        CircuitOpen,
                        Closed,
                        ConfigError,
                        ConversionError,
                        DeadlineExceeded,
                        InferenceError,
                        InputError,
                        KitError,
                        MissingDependencyError,
                        ModelLoadError,
                        Overloaded,
                        ProviderUnavailableError,
                        QuantizationError,
                        ServingError,
)
from kit.models import FormatUnavailable, available_formats, resolve_model
from kit.profile import (
                        Figure,
                        Instrumented,
                        LoadConfig,
                        LoadResult,
                        MetricsRecorder,
                        compare,
                        environment,
                        summary_frame,
)
from kit.profile import profile as measure
from kit.profile.providers import choose_providers
from kit.report import finding, interactive, publish
from kit.serve import CacheConfig, CircuitBreaker, DynamicBatcher, ResultCache, Retry, Router
from kit.specs import TensorSpec, batch_axes, check_feeds, supports_batching, synthetic_feeds
from kit.tfserving import ModelRegistry, ModelServer
from kit.tune import Objective, SearchSpace, Tuner
from kit.zoo import digits_data, get_model, sample_feeds

__version__ = "0.1.0"

__all__ = [
    "CacheConfig", "CircuitBreaker", "CircuitOpen", "Closed", "ConfigError", "ConversionError", "Dataset",
    "DeadlineExceeded", "DynamicBatcher", "Figure", "FormatUnavailable", "InferenceError", "InputError", "Instrumented",
    "KitError", "LoadConfig", "LoadResult", "MetricsRecorder", "MissingDependencyError", "ModelArtifact",
    "ModelLoadError", "ModelRegistry", "ModelServer", "Objective", "OnnxRuntimeEngine", "OrtOptions", "Overloaded",
    "Predictor", "PredictorBase", "ProviderUnavailableError", "QuantizationError", "ResultCache", "Retry", "Router",
    "SearchSpace", "ServingError", "TFServingEngine", "TensorSpec", "Tuner", "Wrapper", "__version__",
    "available_formats", "batch_axes", "check_feeds", "choose_providers", "compare", "create_engine", "digits_data",
    "discover_providers", "environment", "finding", "get_model", "interactive", "lineage_frame", "load_data", "measure",
    "publish", "resolve_model", "sample_feeds", "summary_frame", "supports_batching", "synthetic_feeds",
]

"""Runtime strategies, each a Predictor wrapping a Predictor, and the serving side.

cache (results), sessions (optimized-model cache, warm pool), warmup, batching (TF Serving's
knobs), routing (hybrid router), resilience (retry, breaker, timeout), faults, ledger,
versions (TF Serving's on-disk registry), scaling (adaptive worker pool), server (``kit serve``).
Every module here is light to import; runtimes load inside the functions that use them.
"""

from kit.serve.batching import BatchingConfig, DynamicBatcher
from kit.serve.cache import CacheConfig, ResultCache
from kit.serve.faults import FaultConfig, FaultInjector
from kit.serve.ledger import Ledgered, RequestLedger
from kit.serve.resilience import BreakerConfig, CircuitBreaker, Retry, RetryPolicy, Timeout
from kit.serve.routing import Fixed, LatencyAware, Router, Rules, Shadow, WeightedSplit
from kit.serve.scaling import ScalingConfig, ScalingPool
from kit.serve.server import ModelServer, ServerConfig
from kit.serve.pool import EnginePool
from kit.serve.sessions import OptimizedModelCache, load_breakdown
from kit.serve.versions import ModelRegistry, VersionPolicy
from kit.serve.warmup import first_request_penalty, read_tfserving_warmup, warm_up, write_tfserving_warmup

__all__ = ["BatchingConfig", "BreakerConfig", "CacheConfig", "CircuitBreaker", "DynamicBatcher", "EnginePool",
           "FaultConfig", "FaultInjector", "Fixed", "LatencyAware", "Ledgered", "ModelRegistry", "ModelServer",
           "OptimizedModelCache", "RequestLedger", "ResultCache", "Retry", "RetryPolicy", "Router", "Rules",
           "ScalingConfig", "ScalingPool", "ServerConfig", "Shadow", "Timeout", "VersionPolicy", "WeightedSplit",
           "first_request_penalty", "load_breakdown", "read_tfserving_warmup", "warm_up", "write_tfserving_warmup"]

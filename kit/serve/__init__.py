"""The request path: runtime strategies, each a Predictor wrapping a Predictor.

cache (results), batching (dynamic batcher), routing (hybrid router), resilience (retry,
breaker, timeout), faults (injection), ledger (a record of every request), scaling (adaptive
worker pool). Beside them, the experiments notebooks run over these strategies: batching_study (the
batcher under closed-loop load), fault_study, scaling_replay. Loading engines lives in ``kit.loading``;
TensorFlow Serving's deployment side (server, versions, models.config, batching parameters, warm-up
files) in ``kit.tfserving``.
Every module here is light to import; runtimes load inside the functions that use them.
"""

from kit.serve.batching import BatchingConfig, DynamicBatcher
from kit.serve.cache import CacheConfig, ResultCache
from kit.serve.faults import FaultConfig, FaultInjector
from kit.serve.ledger import Ledgered, RequestLedger
from kit.serve.resilience import BreakerConfig, CircuitBreaker, Retry, RetryPolicy, Timeout
from kit.serve.routing import Fixed, LatencyAware, Router, Rules, Shadow, WeightedSplit
from kit.serve.scaling import ScalingConfig, ScalingPool

__all__ = ["BatchingConfig", "BreakerConfig", "CacheConfig", "CircuitBreaker", "DynamicBatcher", "FaultConfig",
           "FaultInjector", "Fixed", "LatencyAware", "Ledgered", "RequestLedger", "ResultCache", "Retry",
           "RetryPolicy", "Router", "Rules", "ScalingConfig", "ScalingPool", "Shadow", "Timeout", "WeightedSplit"]

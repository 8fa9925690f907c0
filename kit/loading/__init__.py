"""Loading engines fast: an on-disk cache of ONNX Runtime's optimized graphs, a warm pool, warm-up.

optimized_cache (``OptimizedModelCache``, ``load_breakdown``: where load time goes), pool
(``EnginePool``: loaded engines kept warm and reused), warmup (``warm_up``, ``warming``,
``first_request_penalty``). It depends on ``kit.engines`` and ``kit.profile`` only.
"""

from kit.loading.optimized_cache import OptimizedModelCache, load_breakdown
from kit.loading.pool import EnginePool
from kit.loading.warmup import first_request_penalty, warm_up, warming

__all__ = ["EnginePool", "OptimizedModelCache", "first_request_penalty", "load_breakdown", "warm_up", "warming"]

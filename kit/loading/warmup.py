"""Warm-up: pay the first-request penalty before users do, and measure what it was.

The first call on a fresh session allocates buffers, picks kernels and (for TensorFlow)
traces functions, so it is much slower than the rest. ``warm_up`` runs throwaway
requests right after loading; ``first_request_penalty`` measures the first user request
with and without that, interleaved; ``warming`` turns any loader into one that warms
what it loads (e.g. for ``EnginePool``). TensorFlow Serving's warm-up files live in
``kit.tfserving.warmup``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from kit.config import require_int
from kit.engines.base import Feeds, Predictor
from kit.specs import batch_size_of, synthetic_feeds


def _requests(predictor: Predictor, requests: Sequence[Feeds] | None, n: int, batch_size: int) -> list[Feeds]:
    if requests is not None:
        return list(requests)
    require_int("the number of warm-up requests", n, 0)
    # seeds far from the usual 0.. so warm-up inputs differ from the requests being measured
    return [synthetic_feeds(predictor.input_specs, batch_size=batch_size, seed=10_000 + i) for i in range(n)]


def warm_up(predictor: Predictor, requests: Sequence[Feeds] | None = None, n: int = 3,
            batch_size: int = 1) -> dict[str, float]:
    """Run ``requests`` (or ``n`` synthetic ones of ``batch_size``) and report their timings."""
    feeds = _requests(predictor, requests, n, batch_size)
    times = []
    for request in feeds:
        start = time.perf_counter()
        predictor.predict(request)
        times.append(time.perf_counter() - start)
    return {"requests": float(len(times)), "seconds": float(sum(times)),
            "first_s": times[0] if times else 0.0, "last_s": times[-1] if times else 0.0}


def warming(loader: Callable[..., Predictor], requests: Sequence[Feeds] | None = None, n: int = 3,
            batch_size: int = 1) -> Callable[..., Predictor]:
    """A loader that warms up every predictor it loads before handing it out."""
    def load(*args: Any, **kwargs: Any) -> Predictor:
        predictor = loader(*args, **kwargs)
        warm_up(predictor, requests, n, batch_size)
        return predictor

    return load


def first_request_penalty(load: Callable[[], Predictor], feeds: Feeds, warmup_requests: int = 3,
                          repeats: int = 3, steady_runs: int = 10,
                          warmup_feeds: Sequence[Feeds] | None = None) -> list[dict[str, Any]]:
    """Rows for fresh loads, without and with warm-up (interleaved), of the first request's cost.

    Each row: ``mode`` (``cold``/``warmed``), load, warm-up, first request and steady
    (median of ``steady_runs`` later requests) seconds, and ``penalty_s`` = first - steady.
    The warm-up runs ``warmup_feeds`` when given (real requests: a model with dynamic sizes may
    refuse made-up ones), else ``warmup_requests`` synthetic requests at the measured batch size.
    """
    for name, value in (("warmup_requests", warmup_requests), ("repeats", repeats), ("steady_runs", steady_runs)):
        require_int(name, value)
    clock = time.perf_counter
    rows = []
    for repeat in range(repeats):
        for mode in ("cold", "warmed"):
            start = clock()
            predictor = load()
            load_s = clock() - start
            try:
                # warm up at the batch that will be measured, read along each input's batch axis
                batch = batch_size_of(feeds, predictor.input_specs or None) if mode == "warmed" else 1
                warm_s = (warm_up(predictor, warmup_feeds, n=warmup_requests, batch_size=batch)["seconds"]
                          if mode == "warmed" else 0.0)
                start = clock()
                predictor.predict(feeds)
                first = clock() - start
                steady = []
                for _ in range(steady_runs):
                    start = clock()
                    predictor.predict(feeds)
                    steady.append(clock() - start)
            finally:
                predictor.close()
            median = statistics.median(steady)
            rows.append({"mode": mode, "repeat": repeat, "load_s": load_s, "warmup_s": warm_s,
                         "first_request_s": first, "steady_s": median, "penalty_s": first - median})
    return rows


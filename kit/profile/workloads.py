"""Request streams for measuring caches: Zipf repeats with a skew, uniform, all-unique.

A cache is only as good as the traffic's repeats. A stream here is a sequence of indices
into a pool of distinct sample feeds, so the same stream can be replayed against a
cached and an uncached predictor and plotted against skew. Zipf over a finite pool
(probability of the k-th most popular item proportional to ``1 / k**skew``) allows any
skew >= 0, unlike ``numpy.random.zipf`` (unbounded, skew > 1 only); skew 0 is uniform.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.config import require_int
from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError
from kit.hashing import feeds_key
from kit.profile.loadgen import _Recorder, _result
from kit.profile.results import LoadResult
from kit.profile.scenarios import SingleStream
from kit.specs import TensorSpec, synthetic_feeds

KINDS = ("zipf", "uniform", "unique")


@dataclass(frozen=True)
class Workload:
    """``requests`` draws over a pool of ``pool_size`` distinct feeds.

    ``kind`` is ``zipf`` (needs ``skew`` >= 0), ``uniform``, or ``unique`` (every request
    different, so ``pool_size`` must be >= ``requests``).
    """

    kind: str = "zipf"
    requests: int = 1000
    pool_size: int = 100
    skew: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("requests", "pool_size"):
            require_int(name, getattr(self, name))
        if isinstance(self.skew, bool) or not isinstance(self.skew, (int, float)) or not self.skew >= 0:
            raise ConfigError(f"skew must be a number >= 0 (0 is uniform), got {self.skew!r}")
        if self.kind == "unique" and self.pool_size < self.requests:
            raise ConfigError(f"an all-unique stream of {self.requests} requests needs pool_size >= "
                              f"{self.requests}, got {self.pool_size}")

    def probabilities(self) -> np.ndarray:
        """Probability of each pool item (item 0 most popular); uniform for non-Zipf kinds."""
        if self.kind == "zipf":
            weights = 1.0 / np.arange(1, self.pool_size + 1, dtype=np.float64) ** float(self.skew)
        else:
            weights = np.ones(self.pool_size)
        return weights / weights.sum()

    def indices(self) -> np.ndarray:
        """The request stream as pool indices (deterministic for a seed)."""
        rng = np.random.default_rng(self.seed)
        if self.kind == "unique":
            return rng.permutation(self.pool_size)[: self.requests]
        # popularity rank is shuffled over the pool so "popular" is not "first built"
        ranked = rng.permutation(self.pool_size)
        return ranked[rng.choice(self.pool_size, size=self.requests, p=self.probabilities())]

    def label(self) -> str:
        return f"zipf(s={self.skew:g})" if self.kind == "zipf" else self.kind


def stream_stats(indices: Sequence[int] | np.ndarray, cache_entries: int | None = None) -> dict[str, float]:
    """What a stream offers a cache: distinct share and the hit rate of an unbounded cache.

    With ``cache_entries``, also the hit rate an LRU cache of that many entries gets
    (simulated on the indices alone, no model involved).
    """
    idx = np.asarray(indices)
    n = int(idx.size)
    distinct = int(np.unique(idx).size)
    out = {"requests": float(n), "distinct": float(distinct),
           "unbounded_hit_rate": (n - distinct) / n if n else 0.0}
    if cache_entries is not None:
        from collections import OrderedDict

        lru: OrderedDict[int, None] = OrderedDict()
        hits = 0
        for i in idx.tolist():
            if i in lru:
                hits += 1
                lru.move_to_end(i)
            else:
                lru[i] = None
                if len(lru) > cache_entries:
                    lru.popitem(last=False)
        out["lru_hit_rate"] = hits / n if n else 0.0
    return out


def feed_pool(sample: Callable[[int], Feeds], size: int, seed: int = 0,
              max_tries: int | None = None) -> list[dict[str, np.ndarray]]:
    """``size`` feeds with distinct content from ``sample(seed)``, ``sample(seed + 1)``, ...

    E.g. ``lambda s: sample_feeds("mobilenet_v2", seed=s)``. Samplers that draw from a
    finite data set can repeat an input; repeats are skipped, because a pool with
    duplicates would turn an "all-unique" stream into one a cache can hit.
    """
    require_int("pool size", size)
    max_tries = max_tries or 10 * size
    pool: list[dict[str, np.ndarray]] = []
    seen: set[bytes] = set()
    for i in range(max_tries):
        feeds = dict(sample(seed + i))
        key = feeds_key(feeds)  # the result cache's own key: equal here means a hit there
        if key not in seen:
            seen.add(key)
            pool.append(feeds)
            if len(pool) == size:
                return pool
    raise ConfigError(f"the sampler gave only {len(pool)} distinct feeds in {max_tries} draws; "
                      f"ask for a pool of at most that size")


def synthetic_pool(specs: Sequence[TensorSpec], size: int, batch_size: int = 1,
                   seed: int = 0) -> list[dict[str, np.ndarray]]:
    """A pool of random feeds for any model's input specs."""
    return feed_pool(lambda s: synthetic_feeds(specs, batch_size=batch_size, seed=s), size, seed)


def requests(pool: Sequence[Feeds], workload: Workload, copy: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """The stream's feeds in order; copies by default, as a network request would arrive."""
    if len(pool) < workload.pool_size:
        raise ConfigError(f"the workload draws from {workload.pool_size} feeds but the pool holds {len(pool)}")
    for i in workload.indices():
        feeds = pool[int(i)]
        yield {k: np.array(v, copy=True) for k, v in feeds.items()} if copy else dict(feeds)


def replay(predictor: Predictor, pool: Sequence[Feeds], workload: Workload, label: str = "",
           **labels: Any) -> LoadResult:
    """Send the stream one request at a time and record each latency (copying is not timed)."""
    return replay_interleaved({label or workload.label(): predictor}, pool, workload, **labels)[0]


def replay_interleaved(predictors: Mapping[str, Predictor], pool: Sequence[Feeds], workload: Workload,
                       **labels: Any) -> list[LoadResult]:
    """Send each request of the stream to every predictor in turn (A B A B ...), one result each.

    Interleaving request by request is what makes a cached and an uncached predictor
    comparable on a shared machine: both see the same requests at the same moment.
    """
    if not predictors:
        raise ConfigError("replay_interleaved needs at least one predictor")
    recs = {k: _Recorder(specs=getattr(p, "input_specs", None)) for k, p in predictors.items()}
    clock = time.perf_counter
    for qid, feeds in enumerate(requests(pool, workload)):
        for label, predictor in predictors.items():
            recs[label].call(predictor.predict, lambda i, f=feeds: f, qid, None, clock)
            if recs[label].fatal is not None:
                raise recs[label].fatal
    skew = float(workload.skew) if workload.kind == "zipf" else 0.0
    results = []
    for label, rec in recs.items():
        result = _result(SingleStream(batch_size=rec.samples or 1), [rec], 0, 0, label)
        result.labels = {"workload": workload.kind, "skew": skew, **labels}
        results.append(result)
    return results

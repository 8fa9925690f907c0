"""Measure any Predictor: warm-up, then run until a minimum duration *and* query count.

``compare`` measures several predictors interleaved in rounds (A B C A B C ...) and
pools the samples, because on a shared machine a number taken now cannot be compared
with one taken a minute ago.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, KitError
from kit.profile.stats import latency_summary
from kit.specs import batch_size_of

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileConfig:
    """How long to measure: both ``min_duration_s`` and ``min_queries`` must be reached."""

    warmup: int = 5
    min_duration_s: float = 1.0
    min_queries: int = 20
    max_queries: int | None = None

    def __post_init__(self) -> None:
        check_run_bounds(self.warmup, self.min_duration_s, self.min_queries, self.max_queries)


def check_run_bounds(warmup: int, min_duration_s: float, min_queries: int, max_queries: int | None,
                     warmup_name: str = "warmup") -> None:
    """The stopping rules every measuring run shares (the profiler's and the load generator's)."""
    if warmup < 0:
        raise ConfigError(f"{warmup_name} must be >= 0, got {warmup}")
    if min_duration_s < 0:
        raise ConfigError(f"min_duration_s must be >= 0, got {min_duration_s}")
    if min_queries < 1:
        raise ConfigError(f"min_queries must be >= 1, got {min_queries}")
    if max_queries is not None and max_queries < min_queries:
        raise ConfigError(f"max_queries ({max_queries}) must be >= min_queries ({min_queries})")


@dataclass
class ProfileResult:
    """Raw latencies of one measured configuration plus labels; turns into rows and frames."""

    label: str
    latencies_s: np.ndarray
    batch_size: int = 1
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "batch_size": self.batch_size, **self.labels,
                **latency_summary(self.latencies_s, samples_per_query=self.batch_size, errors=self.errors)}

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"label": self.label, "batch_size": self.batch_size,
                             "latency_ms": self.latencies_s * 1e3})


def _time_calls(call: Callable[[], object], n: int) -> tuple[list[float], list[str]]:
    latencies, errors = [], []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        try:
            call()
        except KitError as exc:  # a failed query is data; programming errors propagate
            errors.append(str(exc))
            continue
        latencies.append(clock() - start)
    return latencies, errors


def profile(predictor: Predictor, feeds: Feeds, config: ProfileConfig | None = None, label: str = "",
            **labels: Any) -> ProfileResult:
    """Measure ``predictor.predict(feeds)`` one query at a time."""
    config = config or ProfileConfig()
    call = lambda: predictor.predict(feeds)  # noqa: E731
    _time_calls(call, config.warmup)
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    chunk = 1
    while True:
        lat, err = _time_calls(call, chunk)
        latencies += lat
        errors += err
        done = len(latencies) + len(errors)
        if config.max_queries is not None and done >= config.max_queries:
            break
        if done >= config.min_queries and time.perf_counter() - start >= config.min_duration_s:
            break
        if errors and not latencies and done >= 3:
            break  # every query fails: no point in waiting out the duration
        chunk = min(chunk * 2, 64)
    return ProfileResult(label=label or getattr(predictor, "name", "predictor"),
                         latencies_s=np.asarray(latencies), batch_size=batch_size_of(feeds),
                         errors=len(errors), error_messages=errors[:5], labels=dict(labels))


def compare(predictors: Mapping[str, Predictor], feeds: Feeds | Mapping[str, Feeds],
            rounds: int = 5, config: ProfileConfig | None = None) -> list[ProfileResult]:
    """Profile several predictors interleaved in ``rounds``; samples pooled per predictor.

    ``feeds`` is either one feed dict for all or a mapping of label to feeds. Each round
    runs every predictor for ``min_duration_s / rounds`` seconds.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    config = config or ProfileConfig()
    per_round = ProfileConfig(warmup=0, min_duration_s=config.min_duration_s / rounds,
                              min_queries=max(1, config.min_queries // rounds))
    per_label_feeds = {k: (feeds[k] if k in feeds and isinstance(feeds[k], Mapping) else feeds)
                       for k in predictors}
    for label, predictor in predictors.items():
        _time_calls(lambda: predictor.predict(per_label_feeds[label]), config.warmup)
    pooled: dict[str, list[ProfileResult]] = {k: [] for k in predictors}
    for _ in range(rounds):
        for label, predictor in predictors.items():
            pooled[label].append(profile(predictor, per_label_feeds[label], per_round, label=label))
    results = []
    for label, parts in pooled.items():
        results.append(ProfileResult(label=label, latencies_s=np.concatenate([p.latencies_s for p in parts]),
                                     batch_size=parts[0].batch_size, errors=sum(p.errors for p in parts),
                                     error_messages=[m for p in parts for m in p.error_messages][:5]))
    return results


def summary_frame(results: Sequence[Any]) -> pd.DataFrame:
    """One row per result: its ``summary()`` (profiler and load-generator results alike)."""
    import pandas as pd

    return pd.DataFrame([r.summary() for r in results])

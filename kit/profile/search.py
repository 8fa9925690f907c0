"""Searches over load: throughput-latency curves, their knee, and the highest rate that meets a target."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kit.engines.base import Predictor
from kit.errors import ConfigError
from kit.profile.loadgen import FeedSource, run
from kit.profile.results import LoadResult, summary_frame
from kit.profile.scenarios import Concurrency, LoadConfig, Server, positive

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def concurrency_sweep(predictors: Mapping[str, Predictor], levels: Sequence[int], feeds: FeedSource = None,
                      config: LoadConfig | None = None, batch_size: int = 1) -> list[LoadResult]:
    """Closed-loop throughput-latency curves for several predictors, interleaved level by level.

    At each concurrency every predictor runs once (A B C, then the next level), so a drift
    in the machine's speed hits all curves alike; each run warms up with two queries per
    client. Results are labelled with the predictor's key.
    """
    config = config or LoadConfig()
    if not levels or any(int(c) < 1 for c in levels):
        raise ConfigError(f"concurrency levels must be ints >= 1, got {list(levels)}")
    results = []
    for level in levels:
        point = replace(config, warmup_queries=max(config.warmup_queries, 2 * int(level)))
        for label, predictor in predictors.items():
            results.append(run(predictor, Concurrency(int(level), batch_size=batch_size), feeds, point, label=label))
    return results


def knee(results: Sequence[LoadResult], fraction: float = 0.9) -> LoadResult:
    """The first point of a curve (in the given order) that reaches ``fraction`` of its best throughput.

    Past the knee more load buys little throughput and only adds latency.
    """
    if not results:
        raise ConfigError("knee needs at least one result")
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
    rates = [r.summary()["samples_per_s"] for r in results]
    best = max(rates)
    return next(r for r, rate in zip(results, rates) if rate >= fraction * best)


@dataclass
class RateSearch:
    """Every run of a search for the highest Poisson rate whose p99 meets ``latency_target_ms``.

    ``best_qps`` is a measurement only when ``bracketed``: a search that ran out of runs before
    any rate missed knows a lower bound, not the limit, and two such bounds must not be compared
    as if they were measured limits (``describe()`` says which it is).
    """

    latency_target_ms: float
    runs: list[LoadResult]

    @property
    def best(self) -> LoadResult | None:
        met = [r for r in self.runs if r.met]
        return max(met, key=lambda r: r.params["target_qps"]) if met else None

    @property
    def best_qps(self) -> float:
        best = self.best
        return float(best.params["target_qps"]) if best else 0.0

    @property
    def missed_qps(self) -> float:
        """Lowest rate that missed the target above the best one that met it (inf: none missed)."""
        return min((float(r.params["target_qps"]) for r in self.runs
                    if not r.met and float(r.params["target_qps"]) > self.best_qps), default=math.inf)

    @property
    def bracketed(self) -> bool:
        """A rate met the target and a faster one missed it: the limit lies between the two."""
        return self.best is not None and not math.isinf(self.missed_qps)

    def describe(self) -> str:
        """The result in words, never presenting a bound as a measured limit."""
        if self.bracketed:
            return f"{self.best_qps:.1f} q/s (missed at {self.missed_qps:.1f})"
        if self.best is not None:
            return f"≥ {self.best_qps:.1f} q/s, not bracketed"
        return f"< {self.missed_qps:.1f} q/s, no rate met the target"

    def to_frame(self) -> pd.DataFrame:
        return summary_frame(self.runs)

    def summary(self) -> dict[str, Any]:
        best = self.best
        return {"latency_target_ms": self.latency_target_ms, "best_qps": self.best_qps,
                "best_p99_ms": best.summary()["p99_ms"] if best else math.nan, "runs": len(self.runs),
                "bracketed": self.bracketed, "missed_qps": self.missed_qps, "result": self.describe()}


def find_max_rate(predictor: Predictor, latency_target_ms: float, feeds: FeedSource = None,
                  config: LoadConfig | None = None, start_qps: float = 10.0, workers: int = 64,
                  batch_size: int = 1, tolerance: float = 0.1, max_runs: int = 12,
                  label: str = "") -> RateSearch:
    """Highest Server rate whose p99 meets the target, as MLPerf's peak-performance search does.

    Doubles the rate from ``start_qps`` until a run fails, then bisects between the last
    rate that met the target and the first that did not, until they are within
    ``tolerance`` (relative) or ``max_runs`` runs have been spent. When the budget runs out
    before a rate misses, the result says so (``RateSearch.bracketed`` is False): start near
    the expected limit (e.g. the best closed-loop throughput) to bracket it in few runs.
    """
    positive("latency_target_ms", latency_target_ms)
    positive("start_qps", start_qps)
    if not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be in (0, 1), got {tolerance}")
    if max_runs < 2:
        raise ConfigError(f"max_runs must be >= 2, got {max_runs}")
    runs: list[LoadResult] = []

    def attempt(qps: float) -> bool:
        scenario = Server(target_qps=qps, latency_target_ms=latency_target_ms, workers=workers,
                          batch_size=batch_size)
        result = run(predictor, scenario, feeds, config, label=label)
        runs.append(result)
        log.info("rate search: %.1f q/s -> p99 %.2f ms (%s)", qps, result.summary()["p99_ms"],
                 "met" if result.met else "missed")
        return bool(result.met)

    good, bad = 0.0, math.inf
    qps = start_qps
    while len(runs) < max_runs and math.isinf(bad):
        if attempt(qps):
            good, qps = qps, qps * 2
        else:
            bad = qps
    while len(runs) < max_runs and not math.isinf(bad) and (bad - good) > tolerance * bad:
        mid = (good + bad) / 2 if good > 0 else bad / 2
        if attempt(mid):
            good = mid
        else:
            bad = mid
    return RateSearch(latency_target_ms=latency_target_ms, runs=runs)

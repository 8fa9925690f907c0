"""Latency statistics: one place that turns raw samples into the figures reports show."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def latency_summary(latencies_s: Sequence[float] | np.ndarray, duration_s: float | None = None,
                    samples_per_query: int = 1, errors: int = 0) -> dict[str, float]:
    """p50/p90/p95/p99/max/mean latency in ms, and throughput in queries and samples per second.

    Throughput uses the wall-clock ``duration_s`` when given (concurrent runs), otherwise
    the sum of latencies (one query at a time).
    """
    lat = np.asarray(latencies_s, dtype=np.float64)
    out: dict[str, float] = {"queries": float(lat.size), "errors": float(errors)}
    if lat.size == 0:
        nan = float("nan")
        out.update({f"p{p}_ms": nan for p in PERCENTILES})
        out.update(mean_ms=nan, max_ms=nan, min_ms=nan, std_ms=nan, qps=0.0, samples_per_s=0.0)
        return out
    ms = lat * 1e3
    for p, value in zip(PERCENTILES, np.percentile(ms, PERCENTILES)):
        out[f"p{p}_ms"] = float(value)
    out.update(mean_ms=float(ms.mean()), max_ms=float(ms.max()), min_ms=float(ms.min()),
               std_ms=float(ms.std()))
    elapsed = duration_s if duration_s else float(lat.sum())
    out["qps"] = float(lat.size / elapsed) if elapsed > 0 else float("inf")
    out["samples_per_s"] = out["qps"] * samples_per_query
    return out


def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """Median and half the inter-quartile range: a robust figure with its noise."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    return float(med), float((q3 - q1) / 2)

"""Scaling experiments around the pure policy: replay readings through other settings, and the step load.

``decide(readings, state, config)`` is a pure function, so any sequence of readings (hand-made,
or recorded by a live ``ScalingPool``) can be replayed through other settings to see how eager
or calm they are. A replay has no feedback: a different size would have changed the readings,
so it shows the decisions a setting makes, not the latency it would give.

The step load (quiet, busy, quiet) is sized from one worker's measured service time, so "busy"
means the same multiple of one worker's capacity on a fast machine and on a slow one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError
from kit.profile.results import LoadResult
from kit.serve.scaling import (
    Decision,
    Readings,
    ScalerState,
    ScalingConfig,
    ScalingPool,
    decide,
    step_load,
)

if TYPE_CHECKING:
    import pandas as pd

_READING_FIELDS = tuple(f.name for f in fields(Readings))


@dataclass(frozen=True)
class Replay:
    """The policy's decisions over a sequence of readings, in order."""

    decisions: tuple[Decision, ...]

    @property
    def time_s(self) -> list[float]:
        return [d.readings.time_s for d in self.decisions]

    @property
    def workers(self) -> list[int]:
        """Pool size after each decision."""
        return [d.workers_after for d in self.decisions]

    @property
    def changes(self) -> int:
        """How many decisions changed the size: the measure of how eager a setting is."""
        return sum(d.action != "hold" for d in self.decisions)

    def to_frame(self) -> pd.DataFrame:
        """One row per decision: the readings, action, size after, and the reason."""
        import pandas as pd

        return pd.DataFrame([d.to_record() for d in self.decisions])


def replay(readings: Iterable[Readings], config: ScalingConfig, workers: int | None = None) -> Replay:
    """Feed ``readings`` through ``decide`` with ``config``, starting at ``workers`` (default: the minimum)."""
    state = ScalerState(workers=config.min_workers if workers is None else workers)
    decisions = []
    for r in readings:
        d = decide(r, state, config)
        state = d.state
        decisions.append(d)
    return Replay(tuple(decisions))


def readings_from_trace(trace: pd.DataFrame) -> list[Readings]:
    """The readings a pool recorded (``ScalingPool.trace_frame()`` or a step load's ``trace``), NaN as None."""
    missing = [n for n in ("time_s", "cpu_percent", "memory_percent", "queue_length") if n not in trace]
    if missing:
        raise ConfigError(f"the trace lacks the reading columns {missing}")
    out = []
    for row in trace[[n for n in _READING_FIELDS if n in trace]].to_dict("records"):
        values = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        values["queue_length"] = int(values["queue_length"])
        out.append(Readings(**values))
    return out


def step_phases(service_ms: float, low_load: float, high_load: float,
                phase_seconds: Sequence[float]) -> list[tuple[float, float]]:
    """(rate q/s, duration s) of the quiet, busy and quiet phases, loads as multiples of one worker's capacity."""
    if not service_ms > 0:
        raise ConfigError(f"service_ms must be > 0, got {service_ms}")
    if not 0 < low_load < high_load:
        raise ConfigError(f"need 0 < low_load < high_load, got {low_load}, {high_load}")
    if len(phase_seconds) != 3 or any(not s > 0 for s in phase_seconds):
        raise ConfigError(f"phase_seconds must be three positive durations (quiet, busy, quiet), got {phase_seconds}")
    one_worker_qps = 1e3 / service_ms
    loads = (low_load, high_load, low_load)
    return [(load * one_worker_qps, float(s)) for load, s in zip(loads, phase_seconds)]


def compare_pools(predictor: Predictor, feeds: Feeds, configs: Mapping[str, ScalingConfig],
                  phases: Sequence[tuple[float, float]], seed: int = 0,
                  drain_timeout_s: float = 60.0) -> dict[str, LoadResult]:
    """The same step load (same seeded arrivals) through one fresh pool per config, one after the other.

    The pools share ``predictor`` and leave it open (``close_inner=False``): the caller owns it.
    """
    results = {}
    for name, config in configs.items():
        pool = ScalingPool(predictor, config, name=name, close_inner=False)
        try:
            results[name] = step_load(pool, phases, feeds, drain_timeout_s=drain_timeout_s, seed=seed)
        finally:
            pool.close()
    return results


def summary_row(result: LoadResult) -> dict[str, float]:
    """A step load's figures with the pool's size figures, for one row of a table.

    ``requests`` counts every arrival; ``failed_or_rejected`` those not answered (failed,
    refused by the full queue, or still unanswered when the drain ran out).
    """
    s, stats = result.summary(), result.stats
    unanswered = s["errors"] + s["dropped"]
    return {"requests": s["queries"] + unanswered, "rejected": float(s["rejected"]),
            "failed_or_rejected": float(unanswered), "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"],
            "p99_ms": s["p99_ms"], "max_workers_used": stats["max_workers_used"], "scale_ups": stats["scale_ups"],
            "scale_downs": stats["scale_downs"]}


def rounds_summary(per_round: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys`` group from per-round ``summary_row`` rows: latencies as medians over rounds,
    ``p99_low_ms``/``p99_high_ms`` their min–max and ``rounds`` their count (what ``Figure.from_columns``
    reads), counts from the first round (whose trace a notebook plots), ``max_workers_used`` the most.

    One step load's p99 rests on its few slowest requests, so it swings between identical runs;
    repeating the step and keeping the range is what lets ``kit compare`` tell a change from noise.
    """
    if per_round.empty or "p99_ms" not in per_round:
        raise ConfigError("rounds_summary needs per-round rows with a p99_ms column (summary_row)")
    grouped = per_round.groupby(list(keys), sort=False)
    how = {c: "first" for c in per_round.columns if c not in (*keys, "round")}
    how.update({c: "median" for c in ("p50_ms", "p95_ms", "p99_ms") if c in per_round})
    if "max_workers_used" in per_round:
        how["max_workers_used"] = "max"
    out = grouped.agg(how)
    out["p99_low_ms"] = grouped.p99_ms.min()
    out["p99_high_ms"] = grouped.p99_ms.max()
    out["rounds"] = grouped.size()
    return out.reset_index()

"""``LoadResult``: the one result type of every measuring run, raw timings first, summaries derived."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.errors import ConfigError
from kit.profile.figures import Figure
from kit.profile.scenarios import positive
from kit.profile.stats import latency_summary

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class LoadResult:
    """Raw per-query timings of one measured run (seconds from its start), plus its verdict.

    The one result type of every measuring run: a load-generator scenario, ``profile``
    (single stream), ``compare`` (single stream in interleaved rounds, samples pooled) and
    the scaling step load. ``rounds`` holds each query's round index (all 0 for one run),
    so the spread over rounds stays available: ``summary()`` reports ``rounds`` and, with
    two or more, ``p50_spread_ms`` and its ends ``p50_low_ms``/``p50_high_ms`` (the min–max of
    ``round_p50s_ms``); ``p50_figure()`` is the same as a publishable ``Figure``. ``labels`` are extra columns of
    the summary (model, engine, ...). ``rejected`` counts queries refused at once with
    ``Overloaded`` (they are also errors). ``stats`` and ``trace`` are what the driven
    predictor recorded of the run, where the caller keeps them (the step load keeps a
    ``ScalingPool``'s ``stats()`` and its decisions frame).

    ``cpu_ms_per_sample`` is this process's CPU time per sample over the run: on a shared
    machine, a variant with more runnable threads can win wall-clock throughput just by
    taking a bigger share of the CPU, and this figure shows it.

    ``duration_s`` is the wall-clock span of the measured part, except for ``single_stream``
    where it is the time spent inside ``predict`` (the sum of service times): one query at a
    time, that is the span without the generator's own gaps, and it stays right when the
    loop is interleaved with other predictors (``compare``, a workload replay).
    """

    scenario: str
    params: dict[str, Any]
    scheduled_s: np.ndarray
    sent_s: np.ndarray
    done_s: np.ndarray
    ok: np.ndarray
    samples_per_query: int
    duration_s: float
    dropped: int = 0
    error_messages: list[str] = field(default_factory=list)
    label: str = ""
    cpu_ms_per_sample: float = math.nan
    rounds: np.ndarray | None = None
    rejected: int = 0
    labels: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    trace: Any = None

    def __post_init__(self) -> None:
        if self.rounds is None:
            self.rounds = np.zeros(self.ok.size, dtype=np.int64)

    @property
    def latencies_s(self) -> np.ndarray:
        """Answered minus scheduled, successful queries only (includes any wait for a sender)."""
        return (self.done_s - self.scheduled_s)[self.ok]

    @property
    def service_s(self) -> np.ndarray:
        """Answered minus really sent: the predictor's own time."""
        return (self.done_s - self.sent_s)[self.ok]

    @property
    def send_lag_s(self) -> np.ndarray:
        """Really sent minus scheduled: how far the generator fell behind its schedule."""
        return self.sent_s - self.scheduled_s

    @property
    def errors(self) -> int:
        return int((~self.ok).sum())

    @property
    def n_rounds(self) -> int:
        """How many rounds the samples were pooled from (1 for a single run)."""
        return int(np.unique(self.rounds).size) if self.rounds.size else 1

    @property
    def latency_target_ms(self) -> float | None:
        return self.params.get("latency_target_ms")

    @property
    def valid(self) -> bool:
        """Nothing dropped and no errors: the figures describe the whole offered load."""
        return self.dropped == 0 and self.errors == 0

    @property
    def met(self) -> bool | None:
        """For a run with a latency target: valid and p99 within it."""
        target = self.latency_target_ms
        if target is None:
            return None
        lat = self.latencies_s
        return bool(self.valid and lat.size and np.percentile(lat, 99) * 1e3 <= target)

    def round_p50s_ms(self) -> np.ndarray:
        """Median latency (ms) of each round that answered at least one query, in round order."""
        lat_ms = (self.done_s - self.scheduled_s) * 1e3
        out = []
        for r in np.unique(self.rounds):
            mask = (self.rounds == r) & self.ok
            if mask.any():
                out.append(float(np.median(lat_ms[mask])))
        return np.asarray(out)

    def summary(self) -> dict[str, Any]:
        """The run's figures; ``p50_spread_ms``, ``p50_low_ms``, ``p50_high_ms`` (max - min, min and max of the
        rounds' medians) when pooled from 2+ rounds."""
        lag_ms = self.send_lag_s * 1e3
        out: dict[str, Any] = {"label": self.label, **self.labels, "scenario": self.scenario, **self.params}
        out.update(latency_summary(self.latencies_s, duration_s=self.duration_s,
                                   samples_per_query=self.samples_per_query, errors=self.errors))
        out["service_p50_ms"] = float(np.percentile(self.service_s, 50) * 1e3) if self.ok.any() else math.nan
        out["send_lag_p50_ms"] = float(np.percentile(lag_ms, 50)) if lag_ms.size else math.nan
        out["send_lag_p99_ms"] = float(np.percentile(lag_ms, 99)) if lag_ms.size else math.nan
        out["send_lag_max_ms"] = float(lag_ms.max()) if lag_ms.size else math.nan
        out["duration_s"] = self.duration_s
        out["cpu_ms_per_sample"] = self.cpu_ms_per_sample
        out["dropped"] = self.dropped
        out["rejected"] = self.rejected
        out["valid"] = self.valid
        if self.latency_target_ms is not None:
            out["met"] = self.met
        out["rounds"] = self.n_rounds
        if self.n_rounds >= 2:
            p50s = self.round_p50s_ms()
            out["p50_spread_ms"] = float(p50s.max() - p50s.min()) if p50s.size else math.nan
            out["p50_low_ms"] = float(p50s.min()) if p50s.size else math.nan
            out["p50_high_ms"] = float(p50s.max()) if p50s.size else math.nan
        return out

    def p50_figure(self) -> Figure:
        """The median latency (ms) as a ``Figure``: the median of the rounds' medians, their min–max and n.

        A single run (one round) gives the pooled p50 with no spread (``n`` 0).
        """
        p50s = self.round_p50s_ms()
        if self.n_rounds >= 2 and p50s.size >= 2:
            return Figure.from_rounds(p50s, unit="ms", better="lower")
        p50 = float(np.percentile(self.latencies_s, 50) * 1e3) if self.latencies_s.size else math.nan
        return Figure.point(p50, unit="ms", better="lower")

    def window_percentiles_ms(self, percentile: float, windows: int = 4) -> np.ndarray:
        """The ``percentile`` latency (ms) of the answered queries in each of ``windows`` equal slices of the
        run's scheduled time, in order; slices with no answered query are left out."""
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
            raise ConfigError(f"windows must be an int >= 1, got {windows!r}")
        if not self.ok.any():
            return np.asarray([])
        lat_ms = (self.done_s - self.scheduled_s) * 1e3
        edges = np.linspace(float(self.scheduled_s.min()), float(self.scheduled_s.max()), windows + 1)
        slot = np.clip(np.searchsorted(edges, self.scheduled_s, side="right") - 1, 0, windows - 1)
        return np.asarray([float(np.percentile(lat_ms[(slot == w) & self.ok], percentile)) for w in range(windows)
                           if ((slot == w) & self.ok).any()])

    def p99_figure(self, windows: int = 4) -> Figure:
        """The pooled p99 latency (ms) with the min–max of the p99s of ``windows`` equal slices of the run.

        A run under load is measured once, yet its p99 rests on its few slowest requests: the
        slices' p99s show how much that figure moves within the run itself. Fewer than 2 slices
        with answered queries give a point (``n`` 0).
        """
        p99s = self.window_percentiles_ms(99, windows)
        lat_ms = (self.done_s - self.scheduled_s)[self.ok] * 1e3
        pooled = float(np.percentile(lat_ms, 99)) if lat_ms.size else math.nan
        if len(p99s) < 2:
            return Figure.point(pooled, unit="ms", better="lower")
        return Figure.from_rounds(p99s, unit="ms", better="lower", value=pooled)

    def to_frame(self) -> pd.DataFrame:
        """One row per measured query (failed ones too, ``ok`` False), times in milliseconds."""
        import pandas as pd

        return pd.DataFrame({"label": self.label, "scenario": self.scenario, "batch_size": self.samples_per_query,
                             "round": self.rounds, "scheduled_ms": self.scheduled_s * 1e3,
                             "sent_ms": self.sent_s * 1e3, "done_ms": self.done_s * 1e3,
                             "latency_ms": (self.done_s - self.scheduled_s) * 1e3,
                             "send_lag_ms": self.send_lag_s * 1e3, "ok": self.ok})

    def timeline(self, bin_s: float = 0.5) -> pd.DataFrame:
        """Offered load (q/s, every scheduled query) and p95 latency (ms, answered ones) per time bin."""
        import pandas as pd

        positive("bin_s", bin_s)
        phases = self.params.get("phases")
        end = sum(d for _, d in phases) if phases else (float(self.scheduled_s.max()) if self.scheduled_s.size else 0.0)
        edges = np.arange(0.0, end + bin_s, bin_s)
        lat_ms = (self.done_s - self.scheduled_s) * 1e3
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            mask = (self.scheduled_s >= lo) & (self.scheduled_s < hi)
            lat = lat_ms[mask & self.ok]
            rows.append({"time_s": float(hi), "offered_qps": float(mask.sum() / bin_s),
                         "p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan")})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<LoadResult {self.scenario} queries={int(s['queries'])} qps={s['qps']:.1f} "
                f"p99={s['p99_ms']:.2f} ms lag_p99={s['send_lag_p99_ms']:.3f} ms>")


def summary_frame(results: Sequence[LoadResult]) -> pd.DataFrame:
    """One row per result: its ``summary()``."""
    import pandas as pd

    return pd.DataFrame([r.summary() for r in results])



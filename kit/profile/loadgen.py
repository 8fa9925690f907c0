"""A load generator modelled on MLPerf LoadGen's scenarios, driving any Predictor.

Scenarios (the figure each one is judged by):

- ``SingleStream``: one query at a time; its 90th-percentile latency.
- ``Server``: open loop, Poisson arrivals at ``target_qps``; its p99 against a latency
  target, and whether the run met it. Latency counts from the *scheduled* arrival, so a
  slow system cannot hide its queueing by slowing the generator (coordinated omission).
- ``Offline``: all queries available at once; samples per second.
- ``Concurrency``: closed loop, ``N`` clients each sending its next query as soon as the
  last one answered; queries per second and p99.
- ``Steps``: open loop like ``Server``, with a Poisson rate that changes in steps (quiet,
  busy, quiet): the step load a self-sizing pool is judged by.

This is the kit's one measuring core: ``kit.profile.profile`` is the ``SingleStream``
scenario, ``compare`` runs it interleaved in rounds, and ``kit.serve.scaling.step_load``
is the ``Steps`` scenario. Every run takes a ``LoadConfig`` and returns a ``LoadResult``
(the load generator's names, kept because every measurement here is a load of some shape;
"profile" is left free for per-operator profiles of where the time goes).

Every run but ``Steps`` warms up (the first ``warmup_queries`` are sent but not counted), then runs
until both ``min_duration_s`` and ``min_queries`` are reached. Each query records when
it was scheduled, when it was really sent and when it was answered, so the generator's
own lag (sent - scheduled) is measured and reported: a result whose generator fell behind
says so instead of passing off the generator's limits as the system's.
``find_max_rate`` searches for the highest Poisson rate whose p99 meets a target;
``concurrency_sweep`` draws throughput-latency curves and ``knee`` finds where they bend.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, KitError, Overloaded
from kit.profile.stats import latency_summary
from kit.specs import TensorSpec, batch_size_of, synthetic_feeds

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FeedSource = Feeds | Sequence[Feeds] | Callable[[int], Feeds] | None


def check_run_bounds(warmup: int, min_duration_s: float, min_queries: int, max_queries: int | None,
                     warmup_name: str = "warmup_queries") -> None:
    """The stopping rules every measuring run shares (``LoadConfig``'s, and configs that build one)."""
    if warmup < 0:
        raise ConfigError(f"{warmup_name} must be >= 0, got {warmup}")
    if min_duration_s < 0:
        raise ConfigError(f"min_duration_s must be >= 0, got {min_duration_s}")
    if min_queries < 1:
        raise ConfigError(f"min_queries must be >= 1, got {min_queries}")
    if max_queries is not None and max_queries < min_queries:
        raise ConfigError(f"max_queries ({max_queries}) must be >= min_queries ({min_queries})")


@dataclass(frozen=True)
class LoadConfig:
    """How long a run lasts: both ``min_duration_s`` and ``min_queries`` must be reached.

    The one config of every measuring run (the profiler's, ``compare``'s, the load
    generator's scenarios). ``warmup_queries`` are sent first and not counted.

    ``max_queries`` caps a run; ``drain_timeout_s`` bounds how long an overloaded open-loop
    run waits for its backlog after the last arrival (queries never sent are ``dropped``
    and make the run invalid). ``switch_interval_s`` sets Python's GIL hand-off interval
    for the run (restored after): at the default 5 ms a sender waking on schedule can wait
    that long for the GIL, which showed up as milliseconds of send lag at 20,000 q/s.
    ``None`` leaves the interpreter's setting alone.
    """

    warmup_queries: int = 10
    min_duration_s: float = 1.0
    min_queries: int = 100
    max_queries: int | None = None
    drain_timeout_s: float = 10.0
    seed: int = 0
    switch_interval_s: float | None = 0.0005

    def __post_init__(self) -> None:
        check_run_bounds(self.warmup_queries, self.min_duration_s, self.min_queries, self.max_queries)
        if self.drain_timeout_s <= 0:
            raise ConfigError(f"drain_timeout_s must be > 0, got {self.drain_timeout_s}")
        if self.switch_interval_s is not None and not 0 < self.switch_interval_s <= 0.1:
            raise ConfigError(f"switch_interval_s must be in (0, 0.1] seconds or None, got {self.switch_interval_s}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


class _Scenario:
    """Every numeric field of a scenario is a count, a rate or a bound: each must be > 0."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                _positive(f.name, value)


@dataclass(frozen=True)
class SingleStream(_Scenario):
    """One query at a time; judged by p90 latency."""

    batch_size: int = 1
    name = "single_stream"


@dataclass(frozen=True)
class Server(_Scenario):
    """Open loop: Poisson arrivals at ``target_qps``, served by up to ``workers`` in flight.

    ``latency_target_ms`` is the p99 bound the run must meet. ``workers`` are the
    generator's sending threads (a synchronous Predictor blocks one per query in flight);
    arrivals that find them all busy wait, and that wait counts as latency.
    ``submit=True`` sends through the predictor's ``submit(feeds) -> Future`` instead (a
    ``ScalingPool``, a ``DynamicBatcher``): one thread issues every arrival on schedule and
    the future's callback records the answer, so nothing but the predictor caps the queries
    in flight (MLPerf LoadGen's asynchronous IssueQuery / QuerySamplesComplete).
    """

    target_qps: float
    latency_target_ms: float = 100.0
    workers: int = 64
    batch_size: int = 1
    submit: bool = False
    name = "server"


@dataclass(frozen=True)
class Steps(_Scenario):
    """Open loop like ``Server``, with a Poisson rate that changes in steps.

    ``phases`` are (rate q/s, duration s), run once as given: there is no warm-up and the
    stopping rules do not apply (``LoadConfig`` gives only the seed and ``drain_timeout_s``).
    Times count from the start of the first phase. ``workers`` and ``submit`` as for ``Server``.
    """

    phases: tuple[tuple[float, float], ...]
    workers: int = 64
    batch_size: int = 1
    submit: bool = False
    name = "steps"

    def __post_init__(self) -> None:
        if not self.phases:
            raise ConfigError("phases must list at least one (rate_qps, duration_s) step")
        for rate, duration in self.phases:
            if not rate > 0 or not duration > 0:
                raise ConfigError(f"each phase needs rate_qps > 0 and duration_s > 0, got ({rate!r}, {duration!r})")
        object.__setattr__(self, "phases", tuple((float(r), float(d)) for r, d in self.phases))
        super().__post_init__()


@dataclass(frozen=True)
class Offline(_Scenario):
    """Everything available at once: ``workers`` threads send ``batch_size``-sample queries back to back."""

    batch_size: int = 32
    workers: int = 1
    name = "offline"


@dataclass(frozen=True)
class Concurrency(_Scenario):
    """Closed loop: ``concurrency`` clients, each sending its next query when the last returns."""

    concurrency: int
    batch_size: int = 1
    name = "concurrency"


Scenario = SingleStream | Server | Offline | Concurrency | Steps


@dataclass
class LoadResult:
    """Raw per-query timings of one measured run (seconds from its start), plus its verdict.

    The one result type of every measuring run: a load-generator scenario, ``profile``
    (single stream), ``compare`` (single stream in interleaved rounds, samples pooled) and
    the scaling step load. ``rounds`` holds each query's round index (all 0 for one run),
    so the spread over rounds stays available: ``summary()`` reports ``rounds`` and, with
    two or more, ``p50_spread_ms`` (see ``round_p50s_ms``). ``labels`` are extra columns of
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
        """The run's figures; ``p50_spread_ms`` (max - min of the rounds' medians) when pooled from 2+ rounds."""
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
        return out

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

        _positive("bin_s", bin_s)
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


def _feed_source(predictor: Predictor, feeds: FeedSource, batch_size: int, seed: int) -> Callable[[int], Feeds]:
    if feeds is None:
        fixed = synthetic_feeds(predictor.input_specs, batch_size=batch_size, seed=seed)
        return lambda i: fixed
    if callable(feeds):
        return feeds
    if isinstance(feeds, Mapping):
        return lambda i: feeds
    pool = list(feeds)
    if not pool:
        raise ConfigError("feeds is an empty sequence; give at least one feed dict")
    return lambda i: pool[i % len(pool)]


class _Recorder:
    """Per-query rows from every sender thread (``list.append`` is atomic under the GIL).

    A failure outside the kit's error tree is a programming error, not a measurement:
    the first one is kept in ``fatal``, every sender stops, and ``run`` re-raises it.
    One recorder holds one round; ``compare`` pools several.
    """

    def __init__(self, warmup: int = 0, specs: Sequence[TensorSpec] | None = None) -> None:
        self.specs = tuple(specs) if specs else None  # each input's batch axis: a state [2, batch, 128] is axis 1
        self.rows: list[tuple[int, float, float, float, bool, bool]] = []
        self.messages: list[str] = []
        self.samples = 0
        self.fatal: BaseException | None = None
        self.origin: float | None = None  # the schedule's zero, for a run whose times count from it (Steps)
        # What a closed loop's stop rule reads: the reported duration (latest answer minus
        # earliest measured send) is never shorter than ``last_done - first_sent``.
        self.warmup = warmup
        self.first_sent: float | None = None
        self.last_done = float("-inf")
        self.measured_ok = self.measured_failed = 0

    def sending(self, source: Callable[[int], Feeds], qid: int, clock: Callable[[], float]) -> tuple[Feeds, float]:
        feeds = source(qid)
        if not self.samples:
            self.samples = batch_size_of(feeds, self.specs)
        sent = clock()
        if qid == self.warmup:
            self.first_sent = sent
        return feeds, sent

    def record(self, qid: int, scheduled: float, sent: float, done: float, exc: BaseException | None) -> None:
        """One answered query; ``exc`` is what it raised (a kit error is a failed query, anything else fatal)."""
        if exc is not None and not isinstance(exc, KitError):
            self.fatal = self.fatal or exc
            return
        if exc is not None and len(self.messages) < 5:
            self.messages.append(f"{type(exc).__name__}: {exc}")
        self.rows.append((qid, scheduled, sent, done, exc is None, isinstance(exc, Overloaded)))
        if qid >= self.warmup:
            if exc is None:
                self.measured_ok += 1
            else:
                self.measured_failed += 1
            if done > self.last_done:
                self.last_done = done

    def call(self, predict: Callable[[Feeds], object], source: Callable[[int], Feeds], qid: int,
             scheduled: float | None, clock: Callable[[], float]) -> None:
        """Send query ``qid`` and wait for it; a closed loop passes ``scheduled=None``: it is due when sent."""
        feeds, sent = self.sending(source, qid, clock)
        try:
            predict(feeds)
            exc = None
        except Exception as e:  # sorted by ``record``: kit errors are data, the rest fatal
            exc = e
        self.record(qid, sent if scheduled is None else scheduled, sent, clock(), exc)

    @property
    def all_failing(self) -> bool:
        """At least 3 measured queries and none answered: no point in waiting out the duration."""
        return self.measured_failed >= 3 and not self.measured_ok


def _result(scenario: Scenario, recs: Sequence[_Recorder], warmup: int, dropped: int, label: str) -> LoadResult:
    """Pool the measured rows of one or more rounds (one recorder each) into one result.

    Times count from the first round's origin (its schedule's zero, else its first measured
    query's scheduled time); the duration is the sum of each round's own (see ``LoadResult``).
    """
    params = asdict(scenario)
    samples = next((r.samples for r in recs if r.samples), 0) or scenario.batch_size
    parts, durations, messages = [], [], []
    for index, rec in enumerate(recs):
        messages += rec.messages
        rows = sorted(r for r in list(rec.rows) if r[0] >= warmup)
        if not rows:
            continue
        arr = np.array([r[1:4] for r in rows], dtype=np.float64)
        flags = np.array([r[4:6] for r in rows], dtype=bool).reshape(-1, 2)
        origin = rec.origin if rec.origin is not None else float(arr[:, 0].min())
        if isinstance(scenario, SingleStream):
            durations.append(float((arr[:, 2] - arr[:, 1]).sum()))
        else:
            durations.append(float(arr[:, 2].max() - origin))
        parts.append((arr, flags, np.full(len(rows), index, dtype=np.int64), origin))
    messages = messages[:5]
    if not parts:
        empty = np.zeros(0)
        return LoadResult(scenario.name, params, empty, empty, empty, np.zeros(0, bool), samples, 0.0,
                          dropped, messages, label, rounds=np.zeros(0, dtype=np.int64))
    zero = parts[0][3]
    arr = np.concatenate([p[0] for p in parts]) - zero
    flags = np.concatenate([p[1] for p in parts])
    rounds = np.concatenate([p[2] for p in parts])
    return LoadResult(scenario.name, params, arr[:, 0], arr[:, 1], arr[:, 2], flags[:, 0], samples,
                      float(sum(durations)), dropped, messages, label, rounds=rounds,
                      rejected=int(flags[:, 1].sum()))


def _run_closed(predictor: Predictor, source: Callable[[int], Feeds], threads: int,
                config: LoadConfig) -> tuple[_Recorder, int]:
    """``threads`` clients back to back until the measured part reaches duration and count.

    The stop is decided before a query is sent, never after one returns: once enough has
    been sent, no client sends again and only what is in flight completes. Deciding after
    would let some clients slip in a last query each, and a batcher would then run a
    small, slow tail batch that is no part of the steady state being measured. A run
    whose first measured queries all fail stops after three of them.
    """
    warmup, limit = config.warmup_queries, config.max_queries
    rec = _Recorder(warmup, getattr(predictor, "input_specs", None))
    clock = time.perf_counter
    counter = itertools.count()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set() and rec.fatal is None:
            qid = next(counter)
            sent = qid - warmup  # measured queries sent before this one
            if sent >= 0:
                if limit is not None and sent >= limit:
                    stop.set()
                    return
                if (sent >= config.min_queries and rec.first_sent is not None
                        and rec.last_done - rec.first_sent >= config.min_duration_s):
                    stop.set()
                    return
                if rec.all_failing:
                    stop.set()
                    return
            rec.call(predictor.predict, source, qid, None, clock)

    if threads == 1:
        client()
    else:
        pool = [threading.Thread(target=client, name=f"loadgen-client-{i}", daemon=True) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return rec, 0


def _schedule(scenario: Server, config: LoadConfig) -> np.ndarray:
    """Poisson arrival offsets (s) for warm-up plus a measured part reaching duration and count."""
    rng = np.random.default_rng(config.seed)
    mean_gap = 1.0 / scenario.target_qps
    warmup = config.warmup_queries
    wanted = max(config.min_queries, math.ceil(config.min_duration_s * scenario.target_qps * 1.1) + 16)
    if config.max_queries is not None:
        wanted = min(wanted, config.max_queries)
    offsets = np.cumsum(rng.exponential(mean_gap, size=warmup + wanted))
    while config.max_queries is None or offsets.size < warmup + config.max_queries:
        t0 = offsets[warmup - 1] if warmup else 0.0
        if offsets[-1] - t0 >= config.min_duration_s:
            break
        more = offsets[-1] + np.cumsum(rng.exponential(mean_gap, size=max(16, offsets.size // 4)))
        offsets = np.concatenate([offsets, more])
    if config.max_queries is not None:
        offsets = offsets[:warmup + config.max_queries]
    return offsets


def _step_schedule(scenario: Steps, seed: int) -> np.ndarray:
    """Poisson arrival offsets (s) of every phase in turn, each phase at its own rate."""
    rng = np.random.default_rng(seed)
    times: list[float] = []
    start_phase = 0.0
    for rate, duration in scenario.phases:
        t = start_phase + rng.exponential(1 / rate)
        while t < start_phase + duration:
            times.append(t)
            t += rng.exponential(1 / rate)
        start_phase += duration
    return np.asarray(times, dtype=np.float64)


def _run_open(predictor: Predictor, source: Callable[[int], Feeds], scenario: Server | Steps,
              offsets: np.ndarray, config: LoadConfig) -> tuple[_Recorder, int]:
    """Arrivals at ``offsets`` (s) sent on schedule, by a pool of sender threads or through ``submit``.

    The whole schedule is drawn first. Each free sender takes the next arrival, sleeps
    until its time and sends it itself, so no hand-off between threads adds to the lag;
    when every sender is busy the next arrival goes out late, and that lag is recorded.
    Arrivals still unsent ``drain_timeout_s`` after the last scheduled one are dropped;
    with ``submit``, so are queries still unanswered then.
    """
    rec = _Recorder(specs=getattr(predictor, "input_specs", None))
    clock = time.perf_counter
    total = int(offsets.size)
    counter = itertools.count()
    dropped = itertools.count()
    start = clock() + 0.002  # let every sender reach its first sleep
    rec.origin = start if isinstance(scenario, Steps) else None
    last = float(offsets[-1]) if total else 0.0
    deadline = start + last + config.drain_timeout_s

    def due(qid: int) -> float | None:
        """Sleep until query ``qid`` is due; None when it is past the deadline (dropped)."""
        scheduled = start + offsets[qid]
        delay = scheduled - clock()
        if delay > 0:
            time.sleep(delay)
        elif clock() > deadline:
            next(dropped)
            return None
        return scheduled

    if scenario.submit:
        return rec, _send_async(predictor, source, rec, total, due, deadline, clock) + next(dropped)

    def sender() -> None:
        while rec.fatal is None:
            qid = next(counter)
            if qid >= total:
                return
            scheduled = due(qid)
            if scheduled is not None:
                rec.call(predictor.predict, source, qid, scheduled, clock)

    pool = [threading.Thread(target=sender, name=f"loadgen-sender-{i}", daemon=True)
            for i in range(scenario.workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=max(0.0, deadline - clock()) + config.drain_timeout_s)
    if any(t.is_alive() for t in pool):
        log.warning("load generator: %d sender threads still blocked in predict after draining",
                    sum(t.is_alive() for t in pool))
    return rec, next(dropped)


def _send_async(predictor: Predictor, source: Callable[[int], Feeds], rec: _Recorder, total: int,
                due: Callable[[int], float | None], deadline: float, clock: Callable[[], float]) -> int:
    """Issue every arrival through ``predictor.submit`` from this thread; the futures' callbacks record
    the answers. Returns how many were still unanswered at the deadline."""
    submit = getattr(predictor, "submit", None)
    if not callable(submit):
        raise ConfigError(f"submit=True needs a predictor with submit(feeds) -> Future; "
                          f"{type(predictor).__name__} has none")
    finished = threading.Condition()
    answered = [0]
    issued = 0
    for qid in range(total):
        if rec.fatal is not None:
            break
        scheduled = due(qid)
        if scheduled is None:
            continue
        feeds, sent = rec.sending(source, qid, clock)
        try:
            future = submit(feeds)
        except Exception as exc:  # refused at once (Overloaded): a failed query, answered now
            rec.record(qid, scheduled, sent, clock(), exc)
            continue

        def on_done(f: Future, qid: int = qid, scheduled: float = scheduled, sent: float = sent) -> None:
            done = clock()
            exc = f.exception() if not f.cancelled() else KitError("cancelled")
            rec.record(qid, scheduled, sent, done, exc)
            with finished:
                answered[0] += 1
                finished.notify_all()

        future.add_done_callback(on_done)
        issued += 1
    with finished:  # callbacks, not result(), mark completion: wait for every one to have run
        finished.wait_for(lambda: answered[0] >= issued, timeout=max(0.0, deadline - clock()))
        return issued - answered[0]


def _drive(predictor: Predictor, scenario: Scenario, source: Callable[[int], Feeds],
           config: LoadConfig) -> tuple[_Recorder, int, float]:
    """One run of ``scenario``: its recorder, dropped queries and this process's CPU seconds."""
    saved_interval = sys.getswitchinterval()
    cpu_start = time.process_time()
    if config.switch_interval_s is not None:
        sys.setswitchinterval(config.switch_interval_s)
    try:
        if isinstance(scenario, Server):
            rec, dropped = _run_open(predictor, source, scenario, _schedule(scenario, config), config)
        elif isinstance(scenario, Steps):
            rec, dropped = _run_open(predictor, source, scenario, _step_schedule(scenario, config.seed), config)
        else:
            threads = (1 if isinstance(scenario, SingleStream) else
                       scenario.workers if isinstance(scenario, Offline) else scenario.concurrency)
            rec, dropped = _run_closed(predictor, source, threads, config)
    finally:
        sys.setswitchinterval(saved_interval)
    if rec.fatal is not None:
        raise rec.fatal
    return rec, dropped, time.process_time() - cpu_start


def _cpu_ms_per_sample(cpu_s: float, recs: Sequence[_Recorder], samples: int) -> float:
    """This process's CPU over the runs, warm-up included, per sample sent."""
    sent = sum(len(r.rows) for r in recs)
    return cpu_s * 1e3 / (sent * samples) if sent else math.nan


def run(predictor: Predictor, scenario: Scenario, feeds: FeedSource = None, config: LoadConfig | None = None,
        label: str = "") -> LoadResult:
    """Drive ``predictor`` with ``scenario`` and return every query's timings.

    ``feeds`` is one feed dict sent every time, a sequence cycled through, a function of
    the query index, or ``None`` for synthetic inputs of the scenario's batch size.
    """
    config = config or LoadConfig()
    source = _feed_source(predictor, feeds, scenario.batch_size, config.seed)
    label = label or getattr(predictor, "name", "predictor")
    if isinstance(scenario, Steps):
        config = replace(config, warmup_queries=0)
    rec, dropped, cpu_s = _drive(predictor, scenario, source, config)
    result = _result(scenario, [rec], config.warmup_queries, dropped, label)
    result.cpu_ms_per_sample = _cpu_ms_per_sample(cpu_s, [rec], result.samples_per_query)
    return result


def profile(predictor: Predictor, feeds: Feeds, config: LoadConfig | None = None, label: str = "",
            **labels: Any) -> LoadResult:
    """Measure ``predictor.predict(feeds)`` one query at a time: the ``SingleStream`` scenario.

    ``labels`` become extra columns of the result's summary (``model="resnet"``).
    """
    samples = batch_size_of(feeds, getattr(predictor, "input_specs", None) or None)
    result = run(predictor, SingleStream(batch_size=samples), feeds, config, label=label)
    result.labels = dict(labels)
    return result


def compare(predictors: Mapping[str, Predictor], feeds: Feeds | Mapping[str, Feeds], rounds: int = 5,
            config: LoadConfig | None = None) -> list[LoadResult]:
    """Single-stream runs of several predictors interleaved in ``rounds`` (A B C A B C ...), samples pooled.

    On a shared machine a number taken now cannot be compared with one taken a minute ago,
    so each round runs every predictor for ``min_duration_s / rounds`` seconds (and
    ``min_queries / rounds`` queries) after one warm-up of ``warmup_queries`` each. ``feeds``
    is one feed dict for all or a mapping of label to feeds. Each result keeps its queries'
    round index, so ``summary()`` reports the spread of the rounds' medians.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    config = config or LoadConfig()
    min_q = max(1, config.min_queries // rounds)
    per_round = replace(config, warmup_queries=0, min_duration_s=config.min_duration_s / rounds, min_queries=min_q,
                        max_queries=None if config.max_queries is None else max(min_q, config.max_queries // rounds))
    sources = {k: _feed_source(p, feeds[k] if k in feeds and isinstance(feeds[k], Mapping) else feeds, 1, config.seed)
               for k, p in predictors.items()}
    warmup = replace(config, warmup_queries=0, min_duration_s=0, min_queries=max(1, config.warmup_queries),
                     max_queries=max(1, config.warmup_queries))
    recs: dict[str, list[_Recorder]] = {k: [] for k in predictors}
    cpu = dict.fromkeys(predictors, 0.0)
    for label, predictor in predictors.items():
        if config.warmup_queries:
            _drive(predictor, SingleStream(), sources[label], warmup)
    for _ in range(rounds):
        for label, predictor in predictors.items():
            rec, _, cpu_s = _drive(predictor, SingleStream(), sources[label], per_round)
            recs[label].append(rec)
            cpu[label] += cpu_s
    results = []
    for label, parts in recs.items():
        batch = next((r.samples for r in parts if r.samples), 1)
        result = _result(SingleStream(batch_size=batch), parts, 0, 0, label)
        result.cpu_ms_per_sample = _cpu_ms_per_sample(cpu[label], parts, result.samples_per_query)
        results.append(result)
    return results


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
    _positive("latency_target_ms", latency_target_ms)
    _positive("start_qps", start_qps)
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

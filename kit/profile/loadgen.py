"""A load generator modelled on MLPerf LoadGen's scenarios, driving any Predictor.

Scenarios (the figure each one is judged by):

- ``SingleStream``: one query at a time; its 90th-percentile latency.
- ``Server``: open loop, Poisson arrivals at ``target_qps``; its p99 against a latency
  target, and whether the run met it. Latency counts from the *scheduled* arrival, so a
  slow system cannot hide its queueing by slowing the generator (coordinated omission).
- ``Offline``: all queries available at once; samples per second.
- ``Concurrency``: closed loop, ``N`` clients each sending its next query as soon as the
  last one answered; queries per second and p99.

Every run warms up (the first ``warmup_queries`` are sent but not counted), then runs
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
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, KitError
from kit.profile.profiler import check_run_bounds, summary_frame
from kit.profile.stats import latency_summary
from kit.specs import batch_size_of, synthetic_feeds

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FeedSource = Feeds | Sequence[Feeds] | Callable[[int], Feeds] | None


@dataclass(frozen=True)
class LoadConfig:
    """How long a run lasts: both ``min_duration_s`` and ``min_queries`` must be reached.

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
        check_run_bounds(self.warmup_queries, self.min_duration_s, self.min_queries, self.max_queries,
                         warmup_name="warmup_queries")
        if self.drain_timeout_s <= 0:
            raise ConfigError(f"drain_timeout_s must be > 0, got {self.drain_timeout_s}")
        if self.switch_interval_s is not None and not 0 < self.switch_interval_s <= 0.1:
            raise ConfigError(f"switch_interval_s must be in (0, 0.1] seconds or None, got {self.switch_interval_s}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


class _Scenario:
    """Every field of a scenario is a count, a rate or a bound: each must be > 0."""

    def __post_init__(self) -> None:
        for f in fields(self):
            _positive(f.name, getattr(self, f.name))


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
    """

    target_qps: float
    latency_target_ms: float = 100.0
    workers: int = 64
    batch_size: int = 1
    name = "server"


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


Scenario = SingleStream | Server | Offline | Concurrency


@dataclass
class LoadResult:
    """Raw per-query timings of one run (seconds from the start of measurement), plus its verdict.

    ``cpu_ms_per_sample`` is this process's CPU time per sample over the run: on a shared
    machine, a variant with more runnable threads can win wall-clock throughput just by
    taking a bigger share of the CPU, and this figure shows it.
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

    def summary(self) -> dict[str, Any]:
        lag_ms = self.send_lag_s * 1e3
        out: dict[str, Any] = {"label": self.label, "scenario": self.scenario, **self.params}
        out.update(latency_summary(self.latencies_s, duration_s=self.duration_s,
                                   samples_per_query=self.samples_per_query, errors=self.errors))
        out["service_p50_ms"] = float(np.percentile(self.service_s, 50) * 1e3) if self.ok.any() else math.nan
        out["send_lag_p50_ms"] = float(np.percentile(lag_ms, 50)) if lag_ms.size else math.nan
        out["send_lag_p99_ms"] = float(np.percentile(lag_ms, 99)) if lag_ms.size else math.nan
        out["send_lag_max_ms"] = float(lag_ms.max()) if lag_ms.size else math.nan
        out["duration_s"] = self.duration_s
        out["cpu_ms_per_sample"] = self.cpu_ms_per_sample
        out["dropped"] = self.dropped
        out["valid"] = self.valid
        if self.latency_target_ms is not None:
            out["met"] = self.met
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per measured query, times in milliseconds."""
        import pandas as pd

        return pd.DataFrame({"label": self.label, "scenario": self.scenario,
                             "scheduled_ms": self.scheduled_s * 1e3, "sent_ms": self.sent_s * 1e3,
                             "done_ms": self.done_s * 1e3, "latency_ms": (self.done_s - self.scheduled_s) * 1e3,
                             "send_lag_ms": self.send_lag_s * 1e3, "ok": self.ok})

    def __repr__(self) -> str:
        s = self.summary()
        return (f"<LoadResult {self.scenario} queries={int(s['queries'])} qps={s['qps']:.1f} "
                f"p99={s['p99_ms']:.2f} ms lag_p99={s['send_lag_p99_ms']:.3f} ms>")


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
    """

    def __init__(self, warmup: int = 0) -> None:
        self.rows: list[tuple[int, float, float, float, bool]] = []
        self.messages: list[str] = []
        self.samples = 0
        self.fatal: BaseException | None = None
        # What a closed loop's stop rule reads: the reported duration (latest answer minus
        # earliest measured send) is never shorter than ``last_done - first_sent``.
        self.warmup = warmup
        self.first_sent: float | None = None
        self.last_done = float("-inf")

    def call(self, predict: Callable[[Feeds], object], source: Callable[[int], Feeds], qid: int,
             scheduled: float | None, clock: Callable[[], float]) -> None:
        """Send query ``qid``; a closed loop passes ``scheduled=None``: it is due when sent."""
        feeds = source(qid)
        if not self.samples:
            self.samples = batch_size_of(feeds)
        sent = clock()
        if qid == self.warmup:
            self.first_sent = sent
        scheduled = sent if scheduled is None else scheduled
        try:
            predict(feeds)
            ok = True
        except KitError as exc:  # a failed query is data; programming errors propagate
            ok = False
            if len(self.messages) < 5:
                self.messages.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            self.fatal = self.fatal or exc
            return
        done = clock()
        self.rows.append((qid, scheduled, sent, done, ok))
        if qid >= self.warmup and done > self.last_done:
            self.last_done = done


def _result(scenario: Scenario, rec: _Recorder, warmup: int, dropped: int, label: str) -> LoadResult:
    rows = sorted(r for r in rec.rows if r[0] >= warmup)
    samples = rec.samples or scenario.batch_size
    params = asdict(scenario)
    if not rows:
        empty = np.zeros(0)
        return LoadResult(scenario.name, params, empty, empty, empty, np.zeros(0, bool), samples, 0.0,
                          dropped, rec.messages, label)
    arr = np.array([r[1:4] for r in rows], dtype=np.float64)
    ok = np.array([r[4] for r in rows], dtype=bool)
    arr -= arr[:, 0].min()  # the first measured query's scheduled time (closed loop: its send time)
    duration = float(arr[:, 2].max())
    return LoadResult(scenario.name, params, arr[:, 0], arr[:, 1], arr[:, 2], ok, samples, duration,
                      dropped, rec.messages, label)


def _run_closed(predictor: Predictor, source: Callable[[int], Feeds], threads: int,
                config: LoadConfig) -> tuple[_Recorder, int]:
    """``threads`` clients back to back until the measured part reaches duration and count.

    The stop is decided before a query is sent, never after one returns: once enough has
    been sent, no client sends again and only what is in flight completes. Deciding after
    would let some clients slip in a last query each, and a batcher would then run a
    small, slow tail batch that is no part of the steady state being measured.
    """
    warmup, limit = config.warmup_queries, config.max_queries
    rec = _Recorder(warmup)
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


def _run_open(predictor: Predictor, source: Callable[[int], Feeds], scenario: Server,
              config: LoadConfig) -> tuple[_Recorder, int]:
    """Poisson arrivals sent on schedule by a pool of sender threads.

    The whole schedule is drawn first. Each free sender takes the next arrival, sleeps
    until its time and sends it itself, so no hand-off between threads adds to the lag;
    when every sender is busy the next arrival goes out late, and that lag is recorded.
    Arrivals still unsent ``drain_timeout_s`` after the last scheduled one are dropped.
    """
    rec = _Recorder()
    clock = time.perf_counter
    offsets = _schedule(scenario, config)
    total = int(offsets.size)
    counter = itertools.count()
    dropped = itertools.count()
    start = clock() + 0.002  # let every sender reach its first sleep
    deadline = start + float(offsets[-1]) + config.drain_timeout_s

    def sender() -> None:
        while rec.fatal is None:
            qid = next(counter)
            if qid >= total:
                return
            scheduled = start + offsets[qid]
            delay = scheduled - clock()
            if delay > 0:
                time.sleep(delay)
            elif clock() > deadline:
                next(dropped)
                continue
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


def run(predictor: Predictor, scenario: Scenario, feeds: FeedSource = None, config: LoadConfig | None = None,
        label: str = "") -> LoadResult:
    """Drive ``predictor`` with ``scenario`` and return every query's timings.

    ``feeds`` is one feed dict sent every time, a sequence cycled through, a function of
    the query index, or ``None`` for synthetic inputs of the scenario's batch size.
    """
    config = config or LoadConfig()
    source = _feed_source(predictor, feeds, scenario.batch_size, config.seed)
    label = label or getattr(predictor, "name", "predictor")
    saved_interval = sys.getswitchinterval()
    cpu_start = time.process_time()
    if config.switch_interval_s is not None:
        sys.setswitchinterval(config.switch_interval_s)
    try:
        if isinstance(scenario, Server):
            rec, dropped = _run_open(predictor, source, scenario, config)
        else:
            threads = (1 if isinstance(scenario, SingleStream) else
                       scenario.workers if isinstance(scenario, Offline) else scenario.concurrency)
            rec, dropped = _run_closed(predictor, source, threads, config)
    finally:
        sys.setswitchinterval(saved_interval)
    if rec.fatal is not None:
        raise rec.fatal
    result = _result(scenario, rec, config.warmup_queries, dropped, label)
    if rec.rows:  # this process's CPU over the whole run, warm-up included, per sample sent
        result.cpu_ms_per_sample = (time.process_time() - cpu_start) * 1e3 / (len(rec.rows) * result.samples_per_query)
    return result


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

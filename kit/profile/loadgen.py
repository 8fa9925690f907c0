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
The configs and scenarios live in ``kit.profile.scenarios``, the result type in
``kit.profile.results``; ``find_max_rate``, ``concurrency_sweep`` and ``knee`` (searches over
load) in ``kit.profile.search``.
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
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, KitError, Overloaded
from kit.profile.results import LoadResult
from kit.profile.scenarios import LoadConfig, Offline, Scenario, Server, SingleStream, Steps
from kit.specs import TensorSpec, batch_size_of, synthetic_feeds

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

FeedSource = Feeds | Sequence[Feeds] | Callable[[int], Feeds] | None


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
            config: LoadConfig | None = None,
            fresh: Mapping[str, Callable[[], Predictor]] | None = None) -> list[LoadResult]:
    """Single-stream runs of several predictors interleaved in ``rounds`` (A B C A B C ...), samples pooled.

    On a shared machine a number taken now cannot be compared with one taken a minute ago,
    so each round runs every predictor for ``min_duration_s / rounds`` seconds (and
    ``min_queries / rounds`` queries) after one warm-up of ``warmup_queries`` each. ``feeds``
    is one feed dict for all or a mapping of label to feeds. Each result keeps its queries'
    round index, so ``summary()`` reports the spread of the rounds' medians.

    ``fresh`` (label -> a function making a new predictor) runs each round after the first on a
    new one, warmed up like the first and closed after its round, so the rounds' spread holds what
    differs from one session to the next: eight ONNX Runtime sessions of MiniLM made one after another
    ran at 17.9 to 31.4 ms p50, each steady within itself (IQR 1.4 ms; ``benchmarks/bench_sessions.py``,
    which in another run saw 1.09x), so rounds on one session showed a tight spread and two runs
    disagreed by a third (``kit compare``). The predictors passed stay open.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    unknown = sorted(set(fresh or {}) - set(predictors))
    if unknown:
        raise ConfigError(f"fresh names {unknown}, which are not among the predictors {sorted(predictors)}")
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
    for round_index in range(rounds):
        for label, predictor in predictors.items():
            if round_index and label in (fresh or {}):
                predictor = fresh[label]()
            try:
                if predictor is not predictors[label] and config.warmup_queries:
                    _drive(predictor, SingleStream(), sources[label], warmup)
                rec, _, cpu_s = _drive(predictor, SingleStream(), sources[label], per_round)
            finally:
                if predictor is not predictors[label]:
                    predictor.close()
            recs[label].append(rec)
            cpu[label] += cpu_s
    results = []
    for label, parts in recs.items():
        batch = next((r.samples for r in parts if r.samples), 1)
        result = _result(SingleStream(batch_size=batch), parts, 0, 0, label)
        result.cpu_ms_per_sample = _cpu_ms_per_sample(cpu[label], parts, result.samples_per_query)
        results.append(result)
    return results



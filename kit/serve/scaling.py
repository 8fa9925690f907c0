"""A worker pool that sizes itself to measured load: CPU %, memory %, queue length, latency.

The seed idea (resize workers by CPU and memory load) done so it neither thrashes nor
starves:

- the policy ``decide(readings, state, config) -> Decision`` is a pure function, so every
  rule (scale up, scale down, bounds, hysteresis, cool-down) is tested with synthetic
  readings and no clock;
- hysteresis twice over: separate high and low thresholds (a band where nothing moves)
  and a number of consecutive readings before acting (``up_after``, ``down_after``);
- a cool-down after every change, so the effect of one change is measured before the next;
- scaling up is held while CPU is saturated (more threads would only contend) and memory
  pressure sheds workers;
- every decision, "hold" included, is recorded with the readings and a reason string,
  and logged at INFO when it changes the size.

``ScalingPool`` serves any Predictor with that policy; ``step_load`` drives it with the load
generator's open-loop step load (``kit.profile.loadgen.Steps``) and returns a ``LoadResult``
holding the pool's decisions, the trace a notebook plots.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config import require_int
from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.errors import Closed, ConfigError, Overloaded
from kit.profile.loadgen import run
from kit.profile.results import LoadResult
from kit.profile.scenarios import LoadConfig, Steps
from kit.profile.stats import latency_summary

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CPU_SOURCES = ("process", "system")


def _percentiles_ms(latencies_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99 in ms (NaN when there are none), as ``latency_summary`` computes them."""
    summary = latency_summary(latencies_s)
    return {key: summary[key] for key in ("p50_ms", "p95_ms", "p99_ms")}


@dataclass(frozen=True)
class ScalingConfig:
    """Bounds, thresholds and timing of the scaling policy.

    Load is *high* when queued requests per worker reach ``queue_high`` or the window's
    p95 latency exceeds ``latency_target_ms``; *low* when the queue per worker is at most
    ``queue_low`` and p95 is under ``latency_low_fraction`` of the target. In between
    nothing changes. A scale-down also needs the remaining workers to stay at most
    ``down_utilization`` busy (from the measured busy workers), so a pool that keeps up
    only thanks to its size is not shrunk into overload. ``cpu_high_percent``/``memory_high_percent`` of ``None`` switch
    those guards off. ``cpu_source`` says whose CPU counts: the whole machine's (``system``,
    right for compute-bound models: a saturated machine gains nothing from more workers,
    whoever saturates it), or this process's share of its cores (``process``, for models
    whose workers mostly wait on a remote server or an accelerator).
    """

    min_workers: int = 1
    max_workers: int = 4
    interval_s: float = 0.25
    queue_high: float = 2.0
    queue_low: float = 0.25
    latency_target_ms: float | None = None
    latency_low_fraction: float = 0.5
    cpu_high_percent: float | None = 95.0
    memory_high_percent: float | None = 90.0
    up_after: int = 2
    down_after: int = 4
    cooldown_s: float = 1.0
    step_up: int = 1
    step_down: int = 1
    max_queue: int = 1000
    cpu_source: str = "system"
    down_utilization: float = 0.7

    def __post_init__(self) -> None:
        for name in ("min_workers", "max_workers", "up_after", "down_after", "step_up", "step_down", "max_queue"):
            require_int(name, getattr(self, name))
        if self.max_workers < self.min_workers:
            raise ConfigError(f"max_workers ({self.max_workers}) must be >= min_workers ({self.min_workers})")
        if not self.interval_s > 0:
            raise ConfigError(f"interval_s must be > 0, got {self.interval_s!r}")
        if self.cooldown_s < 0:
            raise ConfigError(f"cooldown_s must be >= 0, got {self.cooldown_s!r}")
        if not 0 <= self.queue_low < self.queue_high:
            raise ConfigError(f"need 0 <= queue_low < queue_high (a band between them is the hysteresis), "
                              f"got queue_low={self.queue_low!r}, queue_high={self.queue_high!r}")
        if self.latency_target_ms is not None and not self.latency_target_ms > 0:
            raise ConfigError(f"latency_target_ms must be > 0 or None, got {self.latency_target_ms!r}")
        if not 0 < self.latency_low_fraction < 1:
            raise ConfigError(f"latency_low_fraction must be in (0, 1), got {self.latency_low_fraction!r}")
        for name in ("cpu_high_percent", "memory_high_percent"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 100:
                raise ConfigError(f"{name} must be in (0, 100] or None, got {value!r}")
        if not 0 < self.down_utilization <= 1:
            raise ConfigError(f"down_utilization must be in (0, 1], got {self.down_utilization!r}")
        if self.cpu_source not in CPU_SOURCES:
            raise ConfigError(f"cpu_source must be one of {CPU_SOURCES}, got {self.cpu_source!r}")


@dataclass(frozen=True)
class Readings:
    """One look at the pool and the machine. ``p95_latency_ms`` is ``None`` when nothing completed."""

    time_s: float
    cpu_percent: float
    memory_percent: float
    queue_length: int
    p95_latency_ms: float | None = None
    completed: int = 0
    busy_workers: float | None = None  # mean number of workers running a request since the last reading


@dataclass(frozen=True)
class ScalerState:
    """What the policy remembers between readings."""

    workers: int
    last_change_s: float | None = None
    high_streak: int = 0
    low_streak: int = 0


@dataclass(frozen=True)
class Decision:
    """The policy's answer: the new size, why, and the state to carry to the next reading."""

    action: str  # "up", "down" or "hold"
    workers_before: int
    workers_after: int
    reason: str
    state: ScalerState
    readings: Readings

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self.readings), "action": self.action, "workers_before": self.workers_before,
                "workers": self.workers_after, "reason": self.reason}


def decide(readings: Readings, state: ScalerState, config: ScalingConfig) -> Decision:
    """The scaling policy: a pure function of the readings, the remembered state and the config."""
    t, w = readings.time_s, state.workers

    def change(target: int, reason: str) -> Decision:
        new = ScalerState(workers=target, last_change_s=t)
        return Decision("up" if target > w else "down", w, target, reason, new, readings)

    def hold(reason: str, high: int = 0, low: int = 0) -> Decision:
        return Decision("hold", w, w, reason, replace(state, high_streak=high, low_streak=low), readings)

    if w < config.min_workers:
        return change(config.min_workers, f"{w} workers is below the minimum {config.min_workers}")
    if w > config.max_workers:
        return change(config.max_workers, f"{w} workers is above the maximum {config.max_workers}")
    cooling_left = (config.cooldown_s - (t - state.last_change_s)) if state.last_change_s is not None else 0.0
    cooling = cooling_left > 0
    mem_high = config.memory_high_percent
    if mem_high is not None and readings.memory_percent >= mem_high:
        why = f"memory {readings.memory_percent:.0f}% >= {mem_high:.0f}%"
        if w <= config.min_workers:
            return hold(f"{why}, but already at the minimum {config.min_workers}")
        if cooling:
            return hold(f"{why}; cooling down ({cooling_left:.2f} s left)")
        return change(max(config.min_workers, w - config.step_down), f"{why}: shed a worker")

    per_worker = readings.queue_length / w
    lat = readings.p95_latency_ms
    target = config.latency_target_ms
    high: list[str] = []
    if per_worker >= config.queue_high:
        high.append(f"queue {per_worker:.1f}/worker >= {config.queue_high:g}")
    if target is not None and lat is not None and lat > target:
        high.append(f"p95 {lat:.1f} ms > target {target:g} ms")
    low = per_worker <= config.queue_low and (target is None or lat is None
                                              or lat <= config.latency_low_fraction * target)
    if high:
        why = "load high (" + ", ".join(high) + ")"
        streak = state.high_streak + 1
        cpu_high = config.cpu_high_percent
        if cpu_high is not None and readings.cpu_percent >= cpu_high:
            return hold(f"{why}, but CPU {readings.cpu_percent:.0f}% >= {cpu_high:.0f}%: "
                        f"more workers would only contend", high=streak)
        if w >= config.max_workers:
            return hold(f"{why}, but already at the maximum {config.max_workers}", high=streak)
        if streak < config.up_after:
            return hold(f"{why}: {streak}/{config.up_after} readings before scaling up", high=streak)
        if cooling:
            return hold(f"{why}; cooling down ({cooling_left:.2f} s left)", high=streak)
        return change(min(config.max_workers, w + config.step_up), f"{why} for {streak} readings")
    if low:
        why = f"load low (queue {per_worker:.2f}/worker <= {config.queue_low:g}" + (
            f", p95 {lat:.1f} ms" if lat is not None else ", idle") + ")"
        streak = state.low_streak + 1
        if w <= config.min_workers:
            return hold(f"{why}, at the minimum {config.min_workers}", low=streak)
        smaller = max(config.min_workers, w - config.step_down)
        if readings.busy_workers is not None and readings.busy_workers / smaller > config.down_utilization:
            return hold(f"{why}, but {readings.busy_workers:.2f} busy workers would keep {smaller} "
                        f"{readings.busy_workers / smaller:.0%} busy > {config.down_utilization:.0%}")
        if streak < config.down_after:
            return hold(f"{why}: {streak}/{config.down_after} readings before scaling down", low=streak)
        if cooling:
            return hold(f"{why}; cooling down ({cooling_left:.2f} s left)", low=streak)
        return change(smaller, f"{why} for {streak} readings")
    return hold(f"load within the band (queue {per_worker:.2f}/worker"
                + (f", p95 {lat:.1f} ms" if lat is not None else "") + ")")


def machine_readings(cpu_source: str = "system") -> Callable[[], tuple[float, float]]:
    """A reader of (CPU %, memory %) with psutil; process CPU is this process's share of its cores."""
    import psutil

    from kit.profile.sysinfo import usable_cores

    proc = psutil.Process()
    cores = len(usable_cores())
    proc.cpu_percent(None)
    psutil.cpu_percent(None)

    def read() -> tuple[float, float]:
        cpu = proc.cpu_percent(None) / cores if cpu_source == "process" else psutil.cpu_percent(None)
        return float(min(cpu, 100.0)), float(psutil.virtual_memory().percent)

    return read


@dataclass
class _Job:
    feeds: Feeds
    future: Future
    submitted: float


class ScalingPool(Wrapper):
    """Serve ``inner`` from a pool of worker threads whose number follows ``decide``.

    ``inner`` must be safe to call from several threads (ONNX Runtime and TensorFlow
    sessions are). ``predict`` blocks; ``submit`` returns a ``Future``. A full queue
    raises ``Overloaded`` at once. ``autoscale=False`` leaves decisions to explicit
    ``tick()`` calls (tests, notebooks stepping by hand); ``read_machine`` replaces psutil;
    ``close_inner=False`` leaves ``inner`` open on close (several pools over one engine).
    """

    def __init__(self, inner: Predictor, config: ScalingConfig | None = None, name: str | None = None,
                 autoscale: bool = True, read_machine: Callable[[], tuple[float, float]] | None = None,
                 clock: Callable[[], float] = time.monotonic, close_inner: bool = True) -> None:
        super().__init__(inner, name=name or f"scaling({getattr(inner, 'name', 'predictor')})")
        self.close_inner = close_inner
        self.config = config or ScalingConfig()
        self._clock = clock
        self._t0 = clock()
        self._read_machine = read_machine or machine_readings(self.config.cpu_source)
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=self.config.max_queue)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state = ScalerState(workers=self.config.min_workers)
        self._threads: list[threading.Thread] = []
        self._retire = 0
        self._window: list[float] = []
        self._busy_s = 0.0
        self._last_read = clock()
        self._latencies: list[float] = []
        self._completed = self._failed = self._rejected = 0
        self.decisions: list[Decision] = []
        self._resize(self.config.min_workers)
        self._monitor = None
        if autoscale:
            self._monitor = threading.Thread(target=self._monitor_loop, name=f"{self.name}-monitor", daemon=True)
            self._monitor.start()

    # -- requests ---------------------------------------------------------------------------
    def submit(self, feeds: Feeds) -> Future:
        if self._stop.is_set():
            raise Closed(f"{self.name!r} is closed")
        future: Future = Future()
        try:
            self._queue.put_nowait(_Job(feeds, future, self._clock()))
        except queue.Full:
            with self._lock:
                self._rejected += 1
            raise Overloaded(f"{self.name!r} queue is full ({self.config.max_queue} waiting)") from None
        return future

    def predict(self, feeds: Feeds) -> Outputs:
        return self.submit(feeds).result()

    def _worker(self) -> None:
        while True:
            with self._lock:
                if self._retire > 0:
                    self._retire -= 1
                    self._threads.remove(threading.current_thread())
                    return
            try:
                job = self._queue.get(timeout=0.02)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue
            started = self._clock()
            try:
                result = self.inner.predict(job.feeds)
            except BaseException as exc:  # handed to the caller through its future, after counting it
                with self._lock:
                    self._failed += 1
                    self._busy_s += self._clock() - started
                job.future.set_exception(exc)
                continue
            now = self._clock()
            latency = now - job.submitted
            with self._lock:
                self._busy_s += now - started
                self._window.append(latency)
                self._latencies.append(latency)
                self._completed += 1
            job.future.set_result(result)

    # -- scaling ----------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._state.workers

    def _resize(self, target: int) -> None:
        with self._lock:
            alive = len(self._threads) - self._retire
            if target > alive:
                cancel = min(self._retire, target - alive)
                self._retire -= cancel
                for _ in range(target - alive - cancel):
                    thread = threading.Thread(target=self._worker, name=f"{self.name}-worker", daemon=True)
                    self._threads.append(thread)
                    thread.start()
            elif target < alive:
                self._retire += alive - target

    def readings(self) -> Readings:
        """Read the machine and the pool now (consumes the latency window)."""
        cpu, mem = self._read_machine()
        now = self._clock()
        with self._lock:
            window, self._window = self._window, []
            busy_s, self._busy_s = self._busy_s, 0.0
            elapsed, self._last_read = now - self._last_read, now
        p95 = float(np.percentile(np.asarray(window) * 1e3, 95)) if window else None
        busy = min(float(self.workers), busy_s / elapsed) if elapsed > 0 else None
        return Readings(time_s=now - self._t0, cpu_percent=cpu, memory_percent=mem,
                        queue_length=self._queue.qsize(), p95_latency_ms=p95, completed=len(window),
                        busy_workers=busy)

    def tick(self, readings: Readings | None = None) -> Decision:
        """Take readings (or use the given ones), decide, apply and record the decision."""
        decision = decide(readings or self.readings(), self._state, self.config)
        self._state = decision.state
        self.decisions.append(decision)
        if decision.action != "hold":
            self._resize(decision.workers_after)
            log.info("%s: %s %d -> %d workers: %s", self.name, decision.action, decision.workers_before,
                     decision.workers_after, decision.reason)
        else:
            log.debug("%s: hold at %d: %s", self.name, decision.workers_after, decision.reason)
        return decision

    def _monitor_loop(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            self.tick()

    # -- reporting and closing -------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters, current size, queue and latency percentiles over the pool's life."""
        with self._lock:
            latencies = list(self._latencies)
            completed, failed, rejected = self._completed, self._failed, self._rejected
        actions = [d.action for d in self.decisions]
        return {"workers": self.workers, "threads": len(self._threads), "queue_length": self._queue.qsize(),
                "completed": completed, "failed": failed, "rejected": rejected, "decisions": len(actions),
                "scale_ups": actions.count("up"), "scale_downs": actions.count("down"),
                "min_workers": self.config.min_workers, "max_workers": self.config.max_workers,
                "max_workers_used": max([d.workers_after for d in self.decisions], default=self.workers),
                **_percentiles_ms(latencies)}

    def to_frame(self) -> pd.DataFrame:
        """Every decision with its readings: time, CPU, memory, queue, p95, action, workers, reason."""
        import pandas as pd

        return pd.DataFrame([d.to_record() for d in self.decisions])

    def _close(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        while True:  # fail what never started, so no caller waits forever
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(Closed(f"{self.name!r} closed before the request ran"))
        for thread in list(self._threads):
            thread.join(timeout=5)
        if self.close_inner:
            self.inner.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "min_workers": self.config.min_workers,
                "max_workers": self.config.max_workers}


# ---------------------------------------------------------------------------------------------
# step load
# ---------------------------------------------------------------------------------------------

def step_load(pool: ScalingPool, phases: Sequence[tuple[float, float]], feeds: Feeds,
              drain_timeout_s: float = 30.0, seed: int = 0) -> LoadResult:
    """Open-loop Poisson arrivals at ``rate`` qps for ``duration`` s per phase, sent to ``pool.submit``.

    The load generator's ``Steps`` scenario with ``submit=True``: one thread issues every
    arrival on schedule, so nothing but the pool's own queue bounds what waits. Latency
    counts from each request's *scheduled* arrival, so queueing inside the pool shows up
    in full; a request the full queue refuses (``Overloaded``) is a failed query and counts
    in ``rejected``. Waits up to ``drain_timeout_s`` for the backlog after the last arrival
    (what is still unanswered then counts as ``dropped``). The result keeps the pool's
    ``stats()`` and, when it decided anything, its decisions frame as ``trace``.
    """
    scenario = Steps(phases=tuple(tuple(p) for p in phases), submit=True)
    config = LoadConfig(warmup_queries=0, min_duration_s=0.0, min_queries=1, drain_timeout_s=drain_timeout_s,
                        seed=seed)
    result = run(pool, scenario, feeds, config, label=pool.name)
    result.trace = pool.to_frame() if pool.decisions else None
    result.stats = pool.stats()
    return result

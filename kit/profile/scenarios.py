"""How long a measuring run lasts (``LoadConfig``) and what load it offers (the scenarios).

MLPerf LoadGen's scenarios, each judged by its own figure: ``SingleStream`` (one query at a
time; p90), ``Server`` (open loop, Poisson arrivals at ``target_qps``; p99 against a target),
``Offline`` (all queries at once; samples per second), ``Concurrency`` (closed loop, N clients),
and ``Steps`` (open loop whose rate changes in steps: the load a self-sizing pool is judged by).
``kit.profile.loadgen`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kit.errors import ConfigError


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


def positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


class _Scenario:
    """Every numeric field of a scenario is a count, a rate or a bound: each must be > 0."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                positive(f.name, value)


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



"""Resilience wrappers: retry with backoff, a circuit breaker per route, and timeouts.

Each wraps a Predictor and is one, so ``Retry(CircuitBreaker(Timeout(engine)))`` is plain
composition. Clock, sleep and randomness are injectable so that tests walk through every
state transition deterministically, without sleeping.

Which errors are worth another try is decided in one place (``is_retryable``): a bad
input or a bad configuration fails the same way every time, so they are never retried,
and a programming error (anything that is not a ``KitError``) is never hidden behind one.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from kit.config import require_int
from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.engines.deadline import _DEADLINE, remaining_deadline
from kit.errors import (
    CircuitOpen,
    Closed,
    ConfigError,
    DeadlineExceeded,
    InferenceError,
    InputError,
    KitError,
    ModelLoadError,
    ServingError,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]

NEVER_RETRY: tuple[type[BaseException], ...] = (InputError, ConfigError, Closed, ModelLoadError)
"""Errors that fail the same way on every attempt (bad input, bad config, closed predictor)."""
RETRY_ON: tuple[type[BaseException], ...] = (InferenceError, ServingError)
"""Errors that a later attempt (or another route) may not meet: engine failures, overload, timeouts."""

NOT_RETRIED_BY_RETRY: tuple[type[BaseException], ...] = (CircuitOpen,)
"""Retryable for a router's fallback, but not worth a backoff: an open breaker stays open for its
whole cool-down, so ``Retry`` fails fast on it and lets a fallback route answer instead."""

def is_retryable(exc: BaseException, retry_on: tuple[type[BaseException], ...] = RETRY_ON) -> bool:
    """Whether another attempt (or another route) might succeed where ``exc`` was raised."""
    return isinstance(exc, retry_on) and not isinstance(exc, NEVER_RETRY)


# --------------------------------------------------------------------------- retry


class _Overran(Exception):
    """Internal: the running attempt reached the retry's deadline (never retried)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (sleep ~ U(0, min(max_delay, base * multiplier**n))).

    ``max_attempts`` counts the first try; ``deadline_s`` bounds the whole request including
    sleeps and a running attempt: the caller gets ``DeadlineExceeded`` at the deadline even
    if the attempt still runs, which takes a worker thread per attempt (``None``: no overall deadline and
    no thread hand-off, for engines that bound their own calls). Full jitter spreads retries of many clients so
    they do not hit a recovering server in lock step (AWS architecture blog, "Exponential
    Backoff And Jitter").
    """

    max_attempts: int = 3
    base_delay_s: float = 0.005
    max_delay_s: float = 0.1
    multiplier: float = 2.0
    deadline_s: float | None = 1.0

    def __post_init__(self) -> None:
        require_int("max_attempts", self.max_attempts, hint=" (1 means no retry)")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ConfigError(f"base_delay_s and max_delay_s must be >= 0, got {self.base_delay_s}, "
                              f"{self.max_delay_s}")
        if self.max_delay_s < self.base_delay_s:
            raise ConfigError(f"max_delay_s ({self.max_delay_s}) must be >= base_delay_s ({self.base_delay_s})")
        if self.multiplier < 1:
            raise ConfigError(f"multiplier must be >= 1, got {self.multiplier}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ConfigError(f"deadline_s must be > 0 or None, got {self.deadline_s}")

    def backoff_cap(self, retry: int) -> float:
        """Upper bound of the sleep before retry number ``retry`` (0 for the first retry)."""
        return min(self.max_delay_s, self.base_delay_s * self.multiplier ** retry)


class Retry(Wrapper):
    """Retry retryable failures of ``inner`` with backoff, within attempts and a deadline.

    When the deadline leaves no room for the next sleep and attempt, the request fails at
    once with ``DeadlineExceeded`` (chained to the last error) rather than sleeping past it.
    With a deadline, each attempt runs on one of ``max_workers`` worker threads and the caller
    waits for it only until the deadline: an attempt that overruns is abandoned (Python cannot
    cancel a running call, so it finishes, or keeps hanging, on its worker; when every worker
    is stuck, later attempts wait in line and their callers still get ``DeadlineExceeded`` on
    time). The attempt sees the remaining deadline (``remaining_deadline``), so a ``Timeout``
    or a remote engine inside can stop sooner. ``give_up_on`` errors are raised at once
    although retryable elsewhere (``CircuitOpen``).
    """

    def __init__(self, inner: Predictor, policy: RetryPolicy | None = None, *,
                 retry_on: tuple[type[BaseException], ...] = RETRY_ON,
                 give_up_on: tuple[type[BaseException], ...] = NOT_RETRIED_BY_RETRY, clock: Clock = time.monotonic,
                 sleep: Sleep = time.sleep, rng: random.Random | None = None, seed: int = 0,
                 max_workers: int = 8, name: str | None = None) -> None:
        require_int("max_workers", max_workers)
        super().__init__(inner, name)
        self.policy = policy or RetryPolicy()
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self.retry_on = tuple(retry_on)
        self.give_up_on = tuple(give_up_on)
        self._clock, self._sleep = clock, sleep
        self._rng = rng or random.Random(seed)
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "attempts": 0, "retries": 0, "succeeded": 0, "failed": 0,
                       "not_retryable": 0, "exhausted": 0, "deadline_exceeded": 0, "slept_s": 0.0}

    def _count(self, **inc: float) -> None:
        with self._lock:
            for key, value in inc.items():
                self._stats[key] += value

    def _attempt(self, feeds: Feeds, deadline: float | None) -> Outputs:
        """One call of ``inner``; with a deadline, on a worker, waited for until the deadline only."""
        if deadline is None:
            return self.inner.predict(feeds)
        left = deadline - self._clock()
        if left > 0:
            with self._lock:
                if self._closed:
                    raise Closed(f"{self.name} is closed")
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="kit-retry")
                pool = self._pool
            future = pool.submit(contextvars.copy_context().run, self.inner.predict, feeds)
            try:
                return future.result(timeout=left)
            except FutureTimeout:
                future.cancel()
        raise _Overran(f"{self.name}: no answer within the {self.policy.deadline_s:g} s deadline "
                       f"(the attempt still running was abandoned)")

    def _close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self.inner.close()

    def predict(self, feeds: Feeds) -> Outputs:
        policy = self.policy
        start = self._clock()
        deadline = None if policy.deadline_s is None else start + policy.deadline_s
        token = _DEADLINE.set(None if policy.deadline_s is None else time.monotonic() + policy.deadline_s)
        self._count(requests=1)
        try:
            attempt = 0
            while True:
                attempt += 1
                self._count(attempts=1)
                try:
                    outputs = self._attempt(feeds, deadline)
                except _Overran as exc:
                    self._count(failed=1, deadline_exceeded=1)
                    raise DeadlineExceeded(str(exc)) from None
                except Exception as exc:
                    if not is_retryable(exc, self.retry_on) or isinstance(exc, self.give_up_on):
                        self._count(failed=1, not_retryable=1 if isinstance(exc, KitError) else 0)
                        raise
                    if attempt >= policy.max_attempts:
                        self._count(failed=1, exhausted=1)
                        raise
                    with self._lock:
                        delay = self._rng.uniform(0.0, policy.backoff_cap(attempt - 1))
                    if deadline is not None and self._clock() + delay >= deadline:
                        self._count(failed=1, deadline_exceeded=1)
                        raise DeadlineExceeded(
                            f"{self.name}: no time left for attempt {attempt + 1} within the "
                            f"{policy.deadline_s:g} s deadline; last error: {type(exc).__name__}: {exc}") from exc
                    log.debug("%s: attempt %d failed (%s); retrying in %.4f s", self.name, attempt, exc, delay)
                    self._count(retries=1, slept_s=delay)
                    self._sleep(delay)
                    continue
                self._count(succeeded=1)
                return outputs
        finally:
            _DEADLINE.reset(token)

    def stats(self) -> dict[str, Any]:
        """Requests, attempts, retries and how failed requests ended."""
        with self._lock:
            return dict(self._stats)


# --------------------------------------------------------------------------- circuit breaker

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """When to open (``failure_threshold`` consecutive failures), how long to stay open
    (``cool_down_s``), how many probes to let through half-open (``half_open_max_calls``)
    and how many probe successes close it again (``success_threshold``)."""

    failure_threshold: int = 5
    cool_down_s: float = 1.0
    half_open_max_calls: int = 1
    success_threshold: int = 1

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_max_calls", "success_threshold"):
            require_int(name, getattr(self, name))
        if self.cool_down_s < 0:
            raise ConfigError(f"cool_down_s must be >= 0, got {self.cool_down_s}")
        if self.success_threshold > self.half_open_max_calls:
            raise ConfigError(f"success_threshold ({self.success_threshold}) cannot exceed "
                              f"half_open_max_calls ({self.half_open_max_calls}): it could never close")


class CircuitBreaker(Wrapper):
    """Closed -> open after consecutive failures; open refuses with ``CircuitOpen``;
    after the cool-down, half-open lets a few probes through: enough successes close it,
    one failure opens it again.

    Only retryable errors count as failures: a bad input says nothing about the route's
    health. Only the probes admitted in the current half-open period can close it: a call
    admitted earlier (while closed) that happens to succeed after the breaker opened says
    nothing about the route now. Every transition is recorded (``transitions``) with the
    clock's time.
    """

    def __init__(self, inner: Predictor, config: BreakerConfig | None = None, *,
                 clock: Clock = time.monotonic, name: str | None = None) -> None:
        super().__init__(inner, name)
        self.config = config or BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0          # consecutive, while closed
        self._opened_at = 0.0
        self._probes = 0            # half-open calls admitted
        self._probe_successes = 0
        self._epoch = 0             # bumped on every transition: which period admitted a call
        self.transitions: list[tuple[float, str, str]] = []
        self._stats = {"calls": 0, "succeeded": 0, "failed": 0, "rejected": 0, "opened": 0}

    @property
    def state(self) -> str:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _move(self, to: str) -> None:
        self.transitions.append((self._clock(), self._state, to))
        log.info("%s: circuit %s -> %s", self.name, self._state, to)
        self._state = to
        self._epoch += 1
        if to == OPEN:
            self._opened_at = self._clock()
            self._stats["opened"] += 1
        elif to == HALF_OPEN:
            self._probes = self._probe_successes = 0
        else:
            self._failures = 0

    def _maybe_half_open(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.config.cool_down_s:
            self._move(HALF_OPEN)

    def _admit(self) -> tuple[int, bool]:
        """Let a call through or raise ``CircuitOpen``; (the period it was admitted in, whether it is a probe)."""
        with self._lock:
            self._stats["calls"] += 1
            self._maybe_half_open()
            if self._state == OPEN:
                self._stats["rejected"] += 1
                left = self.config.cool_down_s - (self._clock() - self._opened_at)
                raise CircuitOpen(f"{self.name}: circuit open after {self.config.failure_threshold} consecutive "
                                  f"failures; refusing calls for another {max(left, 0.0):.3f} s")
            if self._state == HALF_OPEN:
                if self._probes >= self.config.half_open_max_calls:
                    self._stats["rejected"] += 1
                    raise CircuitOpen(f"{self.name}: circuit half-open and its {self.config.half_open_max_calls} "
                                      f"probe call(s) are in flight; refusing until they finish")
                self._probes += 1
                return self._epoch, True
            return self._epoch, False

    def _is_probe(self, ticket: tuple[int, bool]) -> bool:
        return self._state == HALF_OPEN and ticket == (self._epoch, True)

    def _on_success(self, ticket: tuple[int, bool]) -> None:
        with self._lock:
            self._stats["succeeded"] += 1
            if self._state == HALF_OPEN:
                if not self._is_probe(ticket):
                    return  # admitted before the breaker opened: the probe decides
                self._probe_successes += 1
                if self._probe_successes >= self.config.success_threshold:
                    self._move(CLOSED)
            else:
                self._failures = 0

    def _on_failure(self) -> None:
        with self._lock:
            self._stats["failed"] += 1
            if self._state == HALF_OPEN:
                self._move(OPEN)
            elif self._state == CLOSED:
                self._failures += 1
                if self._failures >= self.config.failure_threshold:
                    self._move(OPEN)

    def _on_neutral(self, ticket: tuple[int, bool]) -> None:
        """A non-retryable error: frees a half-open probe slot without judging the route."""
        with self._lock:
            if self._is_probe(ticket):
                self._probes = max(0, self._probes - 1)

    def predict(self, feeds: Feeds) -> Outputs:
        ticket = self._admit()
        try:
            outputs = self.inner.predict(feeds)
        except Exception as exc:
            if is_retryable(exc):
                self._on_failure()
            else:
                self._on_neutral(ticket)
            raise
        self._on_success(ticket)
        return outputs

    def stats(self) -> dict[str, Any]:
        """State, call counts, how often it opened, and the transitions so far."""
        with self._lock:
            self._maybe_half_open()
            return {"state": self._state, **self._stats, "consecutive_failures": self._failures,
                    "transitions": len(self.transitions)}


# --------------------------------------------------------------------------- timeout


class Timeout(Wrapper):
    """Fail with ``DeadlineExceeded`` when ``inner`` takes longer than ``timeout_s``.

    The call runs on a worker thread so the caller gets its answer on time even when the
    inner predictor hangs; the hung call itself cannot be cancelled in Python and finishes
    (or keeps hanging) on its worker, which is why ``max_workers`` bounds them. Inside a
    ``Retry``, the smaller of ``timeout_s`` and the retry's remaining deadline applies.
    """

    def __init__(self, inner: Predictor, timeout_s: float, *, max_workers: int = 8,
                 name: str | None = None) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        if max_workers < 1:
            raise ConfigError(f"max_workers must be >= 1, got {max_workers}")
        super().__init__(inner, name)
        self.timeout_s = float(timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kit-timeout")
        self._lock = threading.Lock()
        self._stats = {"calls": 0, "succeeded": 0, "failed": 0, "timed_out": 0}

    def predict(self, feeds: Feeds) -> Outputs:
        if self._closed:
            raise Closed(f"{self.name} is closed")
        left = remaining_deadline()
        budget = self.timeout_s if left is None else min(self.timeout_s, left)
        with self._lock:
            self._stats["calls"] += 1
        if budget <= 0:
            with self._lock:
                self._stats["timed_out"] += 1
            raise DeadlineExceeded(f"{self.name}: the request's deadline had already passed")
        future = self._pool.submit(self.inner.predict, feeds)
        try:
            outputs = future.result(timeout=budget)
        except FutureTimeout as exc:
            future.cancel()
            with self._lock:
                self._stats["timed_out"] += 1
            raise DeadlineExceeded(f"{self.name}: no answer within {budget:.3f} s "
                                   f"(timeout {self.timeout_s:g} s)") from exc
        except Exception:
            with self._lock:
                self._stats["failed"] += 1
            raise
        with self._lock:
            self._stats["succeeded"] += 1
        return outputs

    def _close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.inner.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"timeout_s": self.timeout_s, **self._stats}

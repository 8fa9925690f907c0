"""Fault study: the same requests through five stacks while the primary route errs, slows and goes down.

The question is what each protection buys under the same trouble: a healthy engine (the baseline),
the faulty primary unprotected, with retry (each attempt under a timeout), with a circuit breaker
and a fallback route, and with all of them. Every faulty stack gets its own seeded
``FaultInjector`` so all see the same fault sequence; the stacks are driven interleaved in rounds so
machine drift hits them alike, and the middle round is an outage (every primary call hangs).
Every request goes into one ``RequestLedger``, so the table counts answered and failed requests
from the books and the ledger can prove none was lost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kit.config import require_int
from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, KitError
from kit.serve.faults import FaultConfig, FaultInjector
from kit.serve.ledger import Ledgered, RequestLedger
from kit.serve.resilience import BreakerConfig, CircuitBreaker, Retry, RetryPolicy, Timeout
from kit.serve.routing import Fixed, Router

if TYPE_CHECKING:
    import pandas as pd

BASELINE, UNPROTECTED, RETRY = "healthy baseline", "unprotected", "retry"
BREAKER, ALL = "breaker + fallback", "retry + breaker + fallback"
STACKS = (BASELINE, UNPROTECTED, RETRY, BREAKER, ALL)


@dataclass(frozen=True)
class FaultStudyConfig:
    """Faults on the primary, how many requests in how many rounds, and the protections' settings.

    ``faults.hang_rate`` is ignored: the study sets it to 1 in the outage round and 0 otherwise.
    """

    faults: FaultConfig
    requests: int
    rounds: int
    timeout_s: float
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        require_int("rounds", self.rounds, minimum=3, hint=" (the middle round is the outage)")
        require_int("requests", self.requests, minimum=self.rounds, hint=" (at least one per round)")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def outage_round(self) -> int:
        return self.rounds // 2


@dataclass
class FaultStudy:
    """The five stacks after the run, their injectors and breakers, and the ledger of every request."""

    stacks: dict[str, Predictor]
    injectors: dict[str, FaultInjector]
    breakers: dict[str, CircuitBreaker]
    ledger: RequestLedger
    config: FaultStudyConfig

    def to_frame(self) -> pd.DataFrame:
        """One row per stack: requests, answered, failed, success rate, latency percentiles of answered ones."""
        import pandas as pd

        book = self.ledger.to_frame()
        rows = []
        for name in self.stacks:
            part = book[book.tag == name]
            ok = part[part.status == "answered"].latency_ms
            rows.append({"stack": name, "requests": len(part), "answered": int((part.status == "answered").sum()),
                         "failed": int((part.status == "failed").sum()),
                         "success_rate": float((part.status == "answered").mean()) if len(part) else float("nan"),
                         "p50_ms": ok.quantile(0.50), "p99_ms": ok.quantile(0.99), "p99.9_ms": ok.quantile(0.999),
                         "max_ms": ok.max(),
                         "breaker_opened": self.breakers[name].stats()["opened"] if name in self.breakers else 0})
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """One paragraph: what each protection bought against the unprotected primary and the healthy engine."""
        t = self.to_frame().set_index("stack")
        unprotected, retry, breaker, full = t.loc[UNPROTECTED], t.loc[RETRY], t.loc[BREAKER], t.loc[ALL]
        return (f"Unprotected, the primary answered {unprotected.success_rate:.1%} of requests with p99 "
                f"{unprotected.p99_ms:.2f} ms. Retry with a {self.config.timeout_s * 1e3:g} ms timeout answered "
                f"{retry.success_rate:.1%} with p99 {retry.p99_ms:.2f} ms; breaker + fallback answered "
                f"{breaker.success_rate:.1%} with p99 {breaker.p99_ms:.2f} ms (its breaker opened "
                f"{int(breaker.breaker_opened)} time(s)); all three together answered {full.success_rate:.1%} "
                f"with p99 {full.p99_ms:.2f} ms, against {t.loc[BASELINE].p99_ms:.2f} ms for a healthy engine.")

    def close(self) -> None:
        for stack in self.stacks.values():
            stack.close()


def build_stacks(make_engine: Callable[[], Predictor], config: FaultStudyConfig,
                 ledger: RequestLedger | None = None,
                 wrap: Callable[[str, Predictor], Predictor] | None = None) -> FaultStudy:
    """The five stacks, each behind ``Ledgered`` (tag = stack name) and then ``wrap(name, stack)`` if given.

    ``make_engine`` is called once per engine needed, so no two stacks share state. ``wrap`` lets
    a caller add e.g. ``Instrumented`` for monitoring without this module knowing about it.
    """
    ledger = ledger if ledger is not None else RequestLedger()
    injectors = {name: FaultInjector(make_engine(), config.faults) for name in (UNPROTECTED, RETRY, BREAKER, ALL)}
    breakers = {name: CircuitBreaker(Timeout(injectors[name], config.timeout_s), config.breaker, name=name)
                for name in (BREAKER, ALL)}
    raw: dict[str, Predictor] = {
        BASELINE: make_engine(),
        UNPROTECTED: injectors[UNPROTECTED],
        RETRY: Retry(Timeout(injectors[RETRY], config.timeout_s), config.retry, seed=config.seed),
        BREAKER: Router({"primary": breakers[BREAKER], "fallback": make_engine()}, Fixed("primary"),
                        fallback=("fallback",)),
        ALL: Router({"primary": Retry(breakers[ALL], config.retry, seed=config.seed), "fallback": make_engine()},
                    Fixed("primary"), fallback=("fallback",)),
    }
    stacks: dict[str, Predictor] = {}
    for name, stack in raw.items():
        ledgered: Predictor = Ledgered(stack, ledger, tag=name)
        stacks[name] = wrap(name, ledgered) if wrap is not None else ledgered
    return FaultStudy(stacks=stacks, injectors=injectors, breakers=breakers, ledger=ledger, config=config)


def run_fault_study(make_engine: Callable[[], Predictor], feeds: Feeds, config: FaultStudyConfig,
                    ledger: RequestLedger | None = None,
                    wrap: Callable[[str, Predictor], Predictor] | None = None) -> FaultStudy:
    """Build the stacks and send ``config.requests`` per stack, interleaved in rounds, the middle one an outage.

    A failed request is not an error of the study: the ledger records it (a kit error with its
    message) and the next request goes on. Anything else (a programming error) propagates.
    """
    study = build_stacks(make_engine, config, ledger, wrap)
    per_round = config.requests // config.rounds
    try:
        for r in range(config.rounds):
            for name, stack in study.stacks.items():
                if name in study.injectors:
                    study.injectors[name].update(hang_rate=1.0 if r == config.outage_round else 0.0)
                for _ in range(per_round):
                    try:
                        stack.predict(feeds)
                    except KitError:
                        pass  # the ledger records it
    finally:
        for injector in study.injectors.values():
            injector.update(hang_rate=0.0)
    return study

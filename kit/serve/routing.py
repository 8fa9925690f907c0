"""A hybrid router over named routes, each a Predictor; the router is one too.

A *policy* picks the route of each request: ``Rules`` on input features (batch size, a
dimension, which model's specs the feeds fit), ``WeightedSplit`` (a seeded canary
percentage), ``LatencyAware`` (EWMA latency or least outstanding requests) or ``Fixed``.
Around any policy the router adds a *fallback chain* (on a retryable error, the next
route answers) and *shadow traffic* (a copy of some requests goes to a candidate in the
background; outputs are compared and the response is never touched). Every route keeps
its own metrics (``stats()``).

The per-request path is two lock acquisitions, two clock reads and the policy's pick,
a few microseconds (``benchmarks/bench_routing.py`` measures it against a direct call).
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kit.engines.base import Feeds, Outputs, Predictor, PredictorBase
from kit.errors import ConfigError, KitError
from kit.serve.resilience import is_retryable
from kit.specs import TensorSpec, batch_size_of

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_clock = time.perf_counter


class _Route:
    """One route's predictor and live metrics (guarded by its own lock)."""

    __slots__ = ("name", "predictor", "lock", "calls", "errors", "in_flight", "answered_as_fallback",
                 "latencies", "error_types")

    def __init__(self, name: str, predictor: Predictor, window: int) -> None:
        self.name, self.predictor = name, predictor
        self.lock = threading.Lock()
        self.calls = self.errors = self.in_flight = self.answered_as_fallback = 0
        self.latencies: deque[float] = deque(maxlen=window)
        self.error_types: dict[str, int] = {}

    def stats(self) -> dict[str, Any]:
        from kit.profile.stats import latency_summary

        with self.lock:
            lat = np.asarray(self.latencies)
            calls, errors = self.calls, self.errors
            out = {"calls": calls, "errors": errors, "error_rate": errors / calls if calls else 0.0,
                   "in_flight": self.in_flight, "answered_as_fallback": self.answered_as_fallback,
                   "errors_by_type": dict(self.error_types)}
        summary = latency_summary(lat)
        out.update({key: summary[key] for key in ("p50_ms", "p99_ms", "mean_ms")})
        return out


class Policy(Protocol):
    """Picks a route name per request. ``bind`` is called once with the router."""

    def bind(self, router: Router) -> None: ...

    def choose(self, feeds: Feeds) -> str: ...


def _require(router: Router, names: Sequence[str], what: str) -> None:
    unknown = [n for n in names if n not in router.routes]
    if unknown:
        raise ConfigError(f"{what} names unknown route(s) {unknown}; the router has {list(router.routes)}")


class Fixed:
    """Every request to one route (useful with a fallback chain or shadow traffic)."""

    def __init__(self, route: str) -> None:
        self.route = route

    def bind(self, router: Router) -> None:
        _require(router, [self.route], "Fixed")

    def choose(self, feeds: Feeds) -> str:
        return self.route


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """Send a request to ``route`` when ``when(feeds)`` is true; ``description`` is for people."""

    route: str
    when: Callable[[Feeds], bool]
    description: str = ""


def batch_size_at_least(n: int, specs: Sequence[TensorSpec] | None = None) -> Callable[[Feeds], bool]:
    """True when the request holds >= ``n`` samples (big batches to a throughput engine).

    With ``specs`` the batch is read along each input's batch axis (a state ``[2, batch, 128]``: axis 1);
    without, along the first input's leading axis. Never raises (``batch_size_of(..., strict=False)``).
    """
    return lambda feeds: batch_size_of(feeds, specs, strict=False) >= n


def dim_at_least(input_name: str, axis: int, n: int) -> Callable[[Feeds], bool]:
    """True when ``feeds[input_name].shape[axis] >= n`` (e.g. long sequences)."""
    def when(feeds: Feeds) -> bool:
        array = feeds.get(input_name)
        return array is not None and array.ndim > axis and array.shape[axis] >= n
    return when


def fits_specs(specs: Sequence[TensorSpec]) -> Callable[[Feeds], bool]:
    """True when the feeds match a model's input specs by name, dtype and shape (a rule on the model)."""
    expected = {s.name: s for s in specs}

    def when(feeds: Feeds) -> bool:
        if feeds.keys() != expected.keys():
            return False
        return all(isinstance(a, np.ndarray) and expected[k].matches(a) is None for k, a in feeds.items())
    return when


class Rules:
    """The first rule whose predicate holds picks the route; otherwise ``default``."""

    def __init__(self, rules: Sequence[Rule], default: str) -> None:
        self.rules = tuple(rules)
        self.default = default

    def bind(self, router: Router) -> None:
        _require(router, [r.route for r in self.rules] + [self.default], "Rules")

    def choose(self, feeds: Feeds) -> str:
        for rule in self.rules:
            if rule.when(feeds):
                return rule.route
        return self.default


# ----------------------------------------------------------------------------- weighted


class WeightedSplit:
    """Pick routes at random in proportion to ``weights`` (seeded); ``set_weights`` moves traffic.

    ``WeightedSplit.canary("stable", "canary", 5)`` sends 5 % of requests to the canary.
    """

    def __init__(self, weights: Mapping[str, float], seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._router: Router | None = None  # set by bind; set_weights checks names against it
        self.set_weights(weights)

    @classmethod
    def canary(cls, stable: str, canary: str, percent: float, seed: int = 0) -> WeightedSplit:
        if not 0 <= percent <= 100:
            raise ConfigError(f"canary percent must be in [0, 100], got {percent}")
        return cls({stable: 100.0 - percent, canary: float(percent)}, seed=seed)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ConfigError(f"weights must be >= 0 with a positive sum, got {dict(weights)}")
        names = tuple(weights)
        cumulative, total = [], 0.0
        for name in names:
            total += float(weights[name])
            cumulative.append(total)
        if self._router is not None:
            _require(self._router, names, "WeightedSplit")
        self.weights = dict(weights)
        self._table = (names, cumulative, total)  # swapped in one assignment: readers see old or new

    def bind(self, router: Router) -> None:
        self._router = router
        _require(router, list(self.weights), "WeightedSplit")

    def choose(self, feeds: Feeds) -> str:
        names, cumulative, total = self._table
        with self._lock:
            x = self._rng.random() * total
        return names[min(bisect.bisect_right(cumulative, x), len(names) - 1)]


# ----------------------------------------------------------------------------- latency-aware


class LatencyAware:
    """Prefer the route answering fastest: ``mode="ewma"`` (smoothed latency, errors count as
    ``error_penalty_s``) or ``mode="least_outstanding"`` (fewest requests in flight).

    With EWMA a route that was slow once would never be tried again, so ``explore`` is the
    (seeded) probability of a uniform pick, which keeps every route's estimate fresh.
    """

    MODES = ("ewma", "least_outstanding")

    def __init__(self, routes: Sequence[str] | None = None, mode: str = "ewma", alpha: float = 0.2,
                 error_penalty_s: float = 1.0, explore: float = 0.05, seed: int = 0) -> None:
        if mode not in self.MODES:
            raise ConfigError(f"mode must be one of {self.MODES}, got {mode!r}")
        if not 0 < alpha <= 1:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
        if not 0 <= explore <= 1:
            raise ConfigError(f"explore must be in [0, 1], got {explore}")
        self.mode, self.alpha, self.error_penalty_s, self.explore = mode, alpha, error_penalty_s, explore
        self._names = tuple(routes) if routes else ()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.ewma_s: dict[str, float | None] = {}

    def bind(self, router: Router) -> None:
        self._names = self._names or tuple(router.routes)
        _require(router, self._names, "LatencyAware")
        self._routes = [router.routes[n] for n in self._names]
        self.ewma_s = {n: None for n in self._names}

    def observe(self, route: str, latency_s: float, ok: bool) -> None:
        if route not in self.ewma_s:
            return
        sample = latency_s if ok else max(latency_s, self.error_penalty_s)
        with self._lock:
            old = self.ewma_s[route]
            self.ewma_s[route] = sample if old is None else old + self.alpha * (sample - old)

    def choose(self, feeds: Feeds) -> str:
        if self.explore:
            with self._lock:
                if self._rng.random() < self.explore:
                    return self._names[self._rng.randrange(len(self._names))]
        if self.mode == "least_outstanding":
            return min(self._routes, key=lambda r: r.in_flight).name
        best, best_v = self._names[0], float("inf")
        for name, value in self.ewma_s.items():
            if value is None:
                return name  # never measured: measure it
            if value < best_v:
                best, best_v = name, value
        return best


# ----------------------------------------------------------------------------- shadow


class Shadow:
    """Mirror a ``fraction`` of requests to the ``route`` candidate in the background.

    Outputs are compared with the answered ones (``compare="allclose"`` within atol/rtol, or
    ``"argmax"`` for classifiers); the caller's response is never delayed or changed, and a
    candidate's failure is only counted. At most ``max_pending`` mirrored calls wait; more
    are dropped (and counted) so a slow candidate cannot pile up memory.
    """

    def __init__(self, route: str, fraction: float = 1.0, compare: str = "allclose", atol: float = 1e-5,
                 rtol: float = 1e-4, max_pending: int = 64, seed: int = 0) -> None:
        if not 0 <= fraction <= 1:
            raise ConfigError(f"shadow fraction must be in [0, 1], got {fraction}")
        if compare not in ("allclose", "argmax"):
            raise ConfigError(f"compare must be 'allclose' or 'argmax', got {compare!r}")
        if max_pending < 1:
            raise ConfigError(f"max_pending must be >= 1, got {max_pending}")
        self.route, self.fraction, self.compare = route, fraction, compare
        self.atol, self.rtol, self.max_pending = atol, rtol, max_pending
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._pool: ThreadPoolExecutor | None = None
        self.counts = {"mirrored": 0, "compared": 0, "agreed": 0, "disagreed": 0, "errors": 0, "dropped": 0}
        self.max_abs_diff = 0.0

    def bind(self, router: Router) -> None:
        _require(router, [self.route], "Shadow")
        self._router = router
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kit-shadow")

    def mirror(self, feeds: Feeds, answer: Outputs) -> None:
        with self._lock:
            if self.fraction < 1 and self._rng.random() >= self.fraction:
                return
            if self._pending >= self.max_pending:
                self.counts["dropped"] += 1
                return
            self._pending += 1
            self.counts["mirrored"] += 1
        copied = {k: np.array(v, copy=True) for k, v in feeds.items()}  # the caller may reuse its buffers
        self._pool.submit(self._run, copied, answer)

    def _agree(self, answer: Outputs, candidate: Outputs) -> tuple[bool, float]:
        """Whether ``candidate`` agrees with ``answer`` (``quality.compare``), and the worst abs difference."""
        from kit.optimize.quality import Gate, compare

        if self.compare == "argmax":
            gate, scores = Gate(max_rel_error=math.inf, min_topk_agreement=1.0), True
        else:
            gate, scores = Gate(max_rel_error=math.inf, atol=self.atol, rtol=self.rtol), False
        report = compare(answer, candidate, gate=gate, scores=scores)
        if any(p.reason.startswith(("missing", "not an output", "shape")) for p in report.parts):
            return False, math.inf
        worst = max((p.max_abs_error for p in report.parts if not math.isnan(p.max_abs_error)), default=0.0)
        return report.ok, worst

    def _run(self, feeds: Feeds, answer: Outputs) -> None:
        try:
            candidate = self._router._call(self._router.routes[self.route], feeds)
            agree, diff = self._agree(answer, candidate)
            with self._lock:
                self.counts["compared"] += 1
                self.counts["agreed" if agree else "disagreed"] += 1
                self.max_abs_diff = max(self.max_abs_diff, diff)
        except Exception as exc:  # the candidate's failure never reaches a caller
            log.debug("shadow route %s failed: %s", self.route, exc)
            with self._lock:
                self.counts["errors"] += 1
        finally:
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every mirrored call has finished; False if ``timeout_s`` ran out first."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            compared = self.counts["compared"]
            return {**self.counts, "pending": self._pending, "max_abs_diff": self.max_abs_diff,
                    "agreement": self.counts["agreed"] / compared if compared else float("nan")}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- router


class Router(PredictorBase):
    """Route each request to one of ``routes`` by ``policy``; fall back along ``fallback``.

    ``fallback`` is an ordered chain of route names: when the chosen route fails with a
    retryable error (never a bad input), the next untried route of the chain answers. When
    every route failed, the last error is raised. Closing the router closes every route.
    Input and output specs are those of the first route.
    """

    def __init__(self, routes: Mapping[str, Predictor], policy: Policy | None = None, *,
                 fallback: Sequence[str] = (), shadow: Shadow | None = None, window: int = 4096,
                 name: str = "router") -> None:
        if not routes:
            raise ConfigError("a router needs at least one route")
        self.name = name
        self.routes: dict[str, _Route] = {n: _Route(n, p, window) for n, p in routes.items()}
        first = next(iter(routes.values()))
        self._input_specs = tuple(first.input_specs)
        self._output_specs = tuple(first.output_specs)
        self.policy = policy or Fixed(next(iter(routes)))
        self.policy.bind(self)
        self.fallback = tuple(fallback)
        _require(self, self.fallback, "fallback")
        self.shadow = shadow
        if shadow is not None:
            shadow.bind(self)
        self._observe = getattr(self.policy, "observe", None)
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "fell_back": 0, "failed": 0}

    def _call(self, route: _Route, feeds: Feeds) -> Outputs:
        with route.lock:
            route.calls += 1
            route.in_flight += 1
        start = _clock()
        try:
            outputs = route.predictor.predict(feeds)
        except Exception as exc:
            elapsed = _clock() - start
            with route.lock:
                route.in_flight -= 1
                route.errors += 1
                kind = type(exc).__name__
                route.error_types[kind] = route.error_types.get(kind, 0) + 1
            if self._observe is not None:
                self._observe(route.name, elapsed, False)
            raise
        elapsed = _clock() - start
        with route.lock:
            route.in_flight -= 1
            route.latencies.append(elapsed)
        if self._observe is not None:
            self._observe(route.name, elapsed, True)
        return outputs

    def predict(self, feeds: Feeds) -> Outputs:
        chosen = self.policy.choose(feeds)
        try:
            outputs = self._call(self.routes[chosen], feeds)
        except Exception as exc:
            if not self.fallback or not is_retryable(exc):
                self._count("failed")
                raise
            outputs = self._fall_back(chosen, feeds, exc)
        else:
            self._count()
        if self.shadow is not None:
            self.shadow.mirror(feeds, outputs)
        return outputs

    def _count(self, outcome: str | None = None) -> None:
        with self._lock:
            self._counts["requests"] += 1
            if outcome:
                self._counts[outcome] += 1

    def _fall_back(self, chosen: str, feeds: Feeds, error: Exception) -> Outputs:
        tried = {chosen}
        for name in self.fallback:
            if name in tried:
                continue
            tried.add(name)
            log.debug("%s: route %s failed (%s); falling back to %s", self.name, chosen, error, name)
            route = self.routes[name]
            try:
                outputs = self._call(route, feeds)
            except Exception as exc:
                if not is_retryable(exc):
                    self._count("failed")
                    raise
                error = exc
                continue
            with route.lock:
                route.answered_as_fallback += 1
            self._count("fell_back")
            return outputs
        self._count("failed")
        raise error

    def stats(self) -> dict[str, Any]:
        """Router counts, per-route metrics under ``routes`` and shadow agreement under ``shadow``."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out["routes"] = {n: r.stats() for n, r in self.routes.items()}
        if self.shadow is not None:
            out["shadow"] = self.shadow.stats()
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per route: calls, errors, error rate, in flight, p50/p99/mean latency."""
        import pandas as pd

        rows = [{"route": n, **{k: v for k, v in s.items() if k != "errors_by_type"}}
                for n, s in self.stats()["routes"].items()]
        return pd.DataFrame(rows)

    def _close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
        errors: list[BaseException] = []
        for route in self.routes.values():
            try:
                route.predictor.close()
            except KitError as exc:  # close every route even when one complains
                errors.append(exc)
        if errors:
            raise errors[0]

    def describe(self) -> dict[str, Any]:
        return {"predictor": type(self).__name__, "name": self.name, "policy": type(self.policy).__name__,
                "routes": list(self.routes), "fallback": list(self.fallback),
                "shadow": self.shadow.route if self.shadow else None}

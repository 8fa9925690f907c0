"""A fault-injecting Predictor: added latency, slow calls, errors and hangs, seeded.

Resilience is only believable when measured against failures that happen on purpose:
wrap a healthy engine in ``FaultInjector`` and retries, breakers and fallbacks have
something to do. The same seed gives the same sequence of faults, so a test or a
notebook run is reproducible; ``update`` changes the faults mid-run (a release going bad).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from kit.config import resolve
from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.errors import Closed, ConfigError, InferenceError, KitError


@dataclass(frozen=True)
class FaultConfig:
    """What to inject per call, each decided independently with the seeded generator.

    - ``latency_s``: added to every call;
    - ``slow_rate`` / ``slow_s``: a fraction of calls takes ``slow_s`` longer (a tail);
    - ``error_rate``: a fraction of calls raises ``error`` (``InferenceError`` by default)
      without reaching the inner predictor;
    - ``hang_rate`` / ``hang_s``: a fraction of calls blocks for ``hang_s`` (or until the
      injector is closed) before answering, as a stuck backend would.
    """

    latency_s: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 30.0
    error: type[KitError] = InferenceError
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("slow_rate", "error_rate", "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("latency_s", "slow_s", "hang_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 seconds, got {getattr(self, name)!r}")
        if not (isinstance(self.error, type) and issubclass(self.error, KitError)):
            raise ConfigError(f"error must be a kit.errors class, got {self.error!r}")


class FaultInjector(Wrapper):
    """Wraps ``inner`` and injects the faults of ``config``; ``stats()`` counts each kind."""

    def __init__(self, inner: Predictor, config: FaultConfig | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, name: str | None = None, **overrides: Any) -> None:
        super().__init__(inner, name or f"faults({getattr(inner, 'name', 'predictor')})")
        self.config = resolve(FaultConfig, config, overrides)
        self._rng = random.Random(self.config.seed)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._stats = {"calls": 0, "errors": 0, "slowed": 0, "hangs": 0}

    def update(self, **changes: Any) -> FaultConfig:
        """Change the injected faults from now on (the generator keeps its sequence)."""
        with self._lock:
            self.config = replace(self.config, **changes)
            return self.config

    def predict(self, feeds: Feeds) -> Outputs:
        if self._closed:
            raise Closed(f"{self.name} is closed")
        with self._lock:
            cfg = self.config
            hang = self._rng.random() < cfg.hang_rate
            fail = self._rng.random() < cfg.error_rate
            slow = self._rng.random() < cfg.slow_rate
            self._stats["calls"] += 1
            self._stats["hangs"] += hang
            self._stats["errors"] += fail and not hang
            self._stats["slowed"] += slow
        delay = cfg.latency_s + (cfg.slow_s if slow else 0.0)
        if delay > 0:
            self._sleep(delay)
        if hang:
            self._released.wait(cfg.hang_s)
        elif fail:
            raise cfg.error(f"{self.name}: injected fault (error_rate={cfg.error_rate:g})")
        return self.inner.predict(feeds)

    def _close(self) -> None:
        self._released.set()  # wake hung calls so their threads can finish
        self.inner.close()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._stats)

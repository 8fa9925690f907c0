"""A warm pool of loaded engines: LRU eviction under a count and a memory bound.

Loading is the slow part of serving a model that is not always in use; the pool keeps
the recently used ones loaded and evicts the least recently used beyond its bounds.
Engines in use (leased) are never closed under their users, and concurrent requests
for one key load it once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.config import require_int
from kit.engines.base import Predictor
from kit.errors import ConfigError


@dataclass
class _Slot:
    engine: Predictor
    nbytes: int
    leases: int = 0


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class EnginePool:
    """Loaded engines kept warm by key, evicted least-recently-used beyond ``max_engines``/``max_bytes``.

    ``loader(key)`` makes an engine; its memory is ``size_of(engine)`` when given, else the
    process's resident-memory growth during the load (at least the model file's size).
    Engines under a ``lease`` are never evicted; if only leased engines remain, the pool
    may exceed its bound until they are released (counted as ``over_bound``).
    """

    def __init__(self, loader: Callable[[str], Predictor], max_engines: int = 4, max_bytes: int | None = None,
                 size_of: Callable[[Predictor], int] | None = None) -> None:
        require_int("max_engines", max_engines)
        require_int("max_bytes", max_bytes, allow_none=True)
        self._loader = loader
        self.max_engines = max_engines
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._counts = dict.fromkeys(("hits", "loads", "evictions", "over_bound"), 0)
        self._load_s = 0.0

    def _measure(self, key: str) -> tuple[Predictor, int, float]:
        before = _rss()
        start = time.perf_counter()
        engine = self._loader(key)
        seconds = time.perf_counter() - start
        if self._size_of is not None:
            return engine, int(self._size_of(engine)), seconds
        path = getattr(engine, "path", None)
        floor = path.stat().st_size if isinstance(path, Path) and path.is_file() else 0
        return engine, max(_rss() - before, floor, 1), seconds

    @contextmanager
    def lease(self, key: str) -> Iterator[Predictor]:
        """The warm engine for ``key`` (loaded on first use), pinned while the block runs."""
        slot = self._acquire(key)
        try:
            yield slot.engine
        finally:
            with self._lock:
                slot.leases -= 1
                self._evict()

    def get(self, key: str) -> Predictor:
        """The warm engine for ``key``, unpinned: a later load may evict and close it."""
        with self.lease(key) as engine:
            return engine

    def _acquire(self, key: str) -> _Slot:
        while True:
            with self._lock:
                slot = self._slots.get(key)
                if slot is not None:
                    self._slots.move_to_end(key)
                    slot.leases += 1
                    self._counts["hits"] += 1
                    return slot
                pending = self._loading.get(key)
                if pending is None:
                    pending = self._loading[key] = threading.Lock()
                    pending.acquire()
                    break
            with pending:  # another thread is loading this key: wait, then look again
                pass
        try:
            engine, nbytes, seconds = self._measure(key)
            if self.max_bytes is not None and nbytes > self.max_bytes:
                engine.close()
                raise ConfigError(f"engine {key!r} takes ~{nbytes} bytes, more than the pool's max_bytes "
                                  f"({self.max_bytes}); raise max_bytes")
            with self._lock:
                slot = self._slots[key] = _Slot(engine, nbytes, leases=1)
                self._counts["loads"] += 1
                self._load_s += seconds
                self._evict()
            return slot
        finally:
            with self._lock:
                del self._loading[key]
            pending.release()

    def _evict(self) -> None:
        """Close least-recently-used idle engines until within bounds (call with the lock held)."""
        def over() -> bool:
            return len(self._slots) > self.max_engines or (
                self.max_bytes is not None and sum(s.nbytes for s in self._slots.values()) > self.max_bytes)

        while over():
            idle = next((k for k, s in self._slots.items() if s.leases == 0), None)
            if idle is None:
                self._counts["over_bound"] += 1
                return
            self._slots.pop(idle).engine.close()
            self._counts["evictions"] += 1

    def keys(self) -> list[str]:
        """Warm keys from least to most recently used."""
        with self._lock:
            return list(self._slots)

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {**self._counts, "engines": len(self._slots), "bytes": sum(s.nbytes for s in self._slots.values()),
                    "max_engines": self.max_engines, "max_bytes": self.max_bytes or 0,
                    "load_s_total": self._load_s}

    def close(self) -> None:
        with self._lock:
            slots, self._slots = list(self._slots.values()), OrderedDict()
        for slot in slots:
            slot.engine.close()

    def __enter__(self) -> EnginePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

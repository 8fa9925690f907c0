"""Result cache: a Predictor that answers repeated requests from memory.

The key is xxh3-128 over every input's name, dtype, shape and bytes plus the model's
identity. A non-cryptographic hash is the point: on a 1x224x224x3 float32 input a
cryptographic hash costs ~15 % of a MobileNetV2 inference, xxh3 ~0.2 %, so a hit costs
a small fraction of a miss (``benchmarks/bench_caching.py`` measures it). Cache entries
are not secrets and the key is 128 bits, so accidental collisions are not a concern;
a cache shared with untrusted clients that could craft collisions is out of scope.

Stored results are immutable: each output is copied into a ``bytes`` buffer and callers
get read-only views of it, which numpy refuses to make writeable, so no caller can
corrupt what the next caller receives.

With ``per_sample=True`` a batch is looked up row by row: hits are served, the misses
(deduplicated) go to the model as one smaller batch, and the rows are reassembled in
order. Rows are cut along each input's batch axis (a state ``[2, batch, 128]``: axis 1) and outputs split
along theirs; an output that does not carry the batch makes it raise.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from kit.artifacts import file_digest
from kit.config import require_int, resolve
from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.errors import ConfigError, InferenceError
from kit.hashing import as_array as _as_array
from kit.hashing import feeds_key
from kit.specs import batch_axes, batch_size_of, check_feeds, fast_path_ok, output_batch_axes

Clock = Callable[[], float]


@dataclass(frozen=True)
class CacheConfig:
    """Bounds of a result cache: entries and bytes (both > 0), optional TTL in seconds.

    ``per_sample`` caches each row of a batch separately (see the module docstring).
    """

    max_entries: int = 1024
    max_bytes: int = 256 * 2**20
    ttl_s: float | None = None
    per_sample: bool = False

    def __post_init__(self) -> None:
        require_int("max_entries", self.max_entries)
        require_int("max_bytes", self.max_bytes)
        if self.ttl_s is not None:
            if isinstance(self.ttl_s, bool) or not isinstance(self.ttl_s, (int, float)) or not self.ttl_s > 0:
                raise ConfigError(f"ttl_s must be a number of seconds > 0, or None for no expiry; got {self.ttl_s!r}")
        if not isinstance(self.per_sample, bool):
            raise ConfigError(f"per_sample must be True or False, got {self.per_sample!r}")


def model_identity(predictor: Predictor) -> bytes:
    """What makes two predictors give the same answers: model file content + configuration.

    Follows ``inner`` through wrappers to a predictor with a ``path`` (a model file is
    hashed once, here); without a file the identity is unique to this predictor object.
    """
    node: Any = predictor
    while getattr(node, "path", None) is None and hasattr(node, "inner"):
        node = node.inner
    h = xxhash.xxh3_128()
    path = getattr(node, "path", None)
    if path is not None and Path(path).is_file():
        h.update(file_digest(path))
    else:
        h.update(f"{type(node).__name__}@{id(node)}".encode())
    describe = node.describe() if hasattr(node, "describe") else {"name": getattr(node, "name", "")}
    h.update(json.dumps(describe, sort_keys=True, default=str).encode())
    return h.digest()


def freeze(outputs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Immutable private copies: arrays over ``bytes`` buffers, which can never be made writeable."""
    frozen = {}
    for name, value in outputs.items():
        array = _as_array(value)
        if array.dtype.kind == "O":
            copy = array.copy()
            copy.flags.writeable = False
        else:
            copy = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=array.dtype).reshape(array.shape)
        frozen[name] = copy
    return frozen


def _views(stored: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: array.view() for name, array in stored.items()}


@dataclass
class _Entry:
    value: dict[str, np.ndarray]
    nbytes: int
    expires: float | None


class LRUStore:
    """A thread-safe LRU map bounded by entries and bytes, with optional TTL.

    Several ``ResultCache`` wrappers may share one store (their model identities keep
    keys apart). ``clock`` is injectable so tests can step time.
    """

    def __init__(self, config: CacheConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.config = config or CacheConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bytes = 0
        self._counts = dict.fromkeys(("hits", "misses", "inserts", "replacements", "evictions", "expirations",
                                      "cleared", "too_large"), 0)

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires is not None and self._clock() >= entry.expires:
                self._remove(key)
                self._counts["expirations"] += 1
                entry = None
            if entry is None:
                self._counts["misses"] += 1
                return None
            self._entries.move_to_end(key)
            self._counts["hits"] += 1
            return entry.value

    def put(self, key: bytes, value: dict[str, np.ndarray]) -> bool:
        """Store ``value`` (already frozen); False when it alone exceeds ``max_bytes``."""
        nbytes = len(key) + sum(int(a.nbytes) for a in value.values())
        with self._lock:
            if nbytes > self.config.max_bytes:
                self._counts["too_large"] += 1
                return False
            # Two threads that missed on the same key both store it; the second is a
            # replacement, not a new entry, so inserts - evictions - expirations - cleared == entries.
            replacing = key in self._entries
            if replacing:
                self._remove(key)
            ttl = self.config.ttl_s
            self._entries[key] = _Entry(value, nbytes, None if ttl is None else self._clock() + ttl)
            self._bytes += nbytes
            self._counts["replacements" if replacing else "inserts"] += 1
            while len(self._entries) > self.config.max_entries or self._bytes > self.config.max_bytes:
                oldest = next(iter(self._entries))
                self._remove(oldest)
                self._counts["evictions"] += 1
            return True

    def _remove(self, key: bytes) -> None:
        self._bytes -= self._entries.pop(key).nbytes

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[bytes]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._counts["cleared"] += len(self._entries)
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict[str, float]:
        with self._lock:
            counts = dict(self._counts)
            lookups = counts["hits"] + counts["misses"]
            return {**counts, "entries": len(self._entries), "bytes": self._bytes,
                    "max_entries": self.config.max_entries, "max_bytes": self.config.max_bytes,
                    "hit_rate": counts["hits"] / lookups if lookups else 0.0}


class ResultCache(Wrapper):
    """A Predictor that serves repeated requests from an ``LRUStore``.

    ``identity`` defaults to ``model_identity(inner)`` (model file hash + configuration).
    Concurrent misses on the same key each run the model once and store the same answer.
    """

    def __init__(self, inner: Predictor, config: CacheConfig | None = None, *, store: LRUStore | None = None,
                 identity: bytes | str | None = None, clock: Clock = time.monotonic, name: str | None = None,
                 **overrides: Any) -> None:
        super().__init__(inner, name=name)
        if config is None and store is not None and not overrides:
            config = store.config
        self.config = config = resolve(CacheConfig, config, overrides)
        self.store = store if store is not None else LRUStore(config, clock=clock)
        if isinstance(identity, str):
            identity = identity.encode()
        self.identity: bytes = identity if identity is not None else model_identity(inner)
        self._lock = threading.Lock()
        self._inner_calls = 0
        self._in_axes = batch_axes(self.input_specs)  # fixed per model: worked out once, not per request
        self._in_names = frozenset(self._in_axes)
        self._out_axes: dict[str, int | None] = {}  # learned from the first per-sample miss (unnamed output dims)
        self._samples_sent = 0

    def predict(self, feeds: Feeds) -> Outputs:
        if self.config.per_sample:
            specs = self.input_specs
            if not fast_path_ok(feeds, self._in_names):
                feeds = check_feeds(specs, feeds)  # rows are cut from arrays of the model's dtypes
            batch = batch_size_of(feeds, specs)
            if batch > 1:
                return self._predict_rows(feeds, batch)
        key = feeds_key(feeds, self.identity)
        stored = self.store.get(key)
        if stored is None:
            stored = freeze(self.inner.predict(feeds))
            self._count(1, batch_size_of(feeds, self.input_specs, strict=False))
            self.store.put(key, stored)
        return _views(stored)

    def _predict_rows(self, feeds: Feeds, batch: int) -> Outputs:
        """Rows cut along each input's batch axis (``batch_axes``); inputs without one (a sample rate) go whole
        into every row's key; outputs are split and joined along their batch axis (``output_batch_axes``)."""
        arrays = {name: _as_array(value) for name, value in feeds.items()}
        in_axes = self._in_axes
        out_axes = self._out_axes or output_batch_axes(self.input_specs, self.output_specs)

        def take(index) -> dict[str, np.ndarray]:
            return {n: a if in_axes.get(n) is None else np.take(a, index, axis=in_axes[n]) for n, a in arrays.items()}

        keys = [feeds_key(take([i]), self.identity) for i in range(batch)]
        rows: list[dict[str, np.ndarray] | None] = [self.store.get(k) for k in keys]
        first_row: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if rows[i] is None and key not in first_row:
                first_row[key] = i
        if first_row:
            miss_rows = list(first_row.values())
            sent = take(np.asarray(miss_rows))
            out = self.inner.predict(sent)
            self._count(1, len(miss_rows))
            out_axes = self._out_axes = output_batch_axes(self.input_specs, self.output_specs, sent, out)
            for name, value in out.items():
                axis = out_axes.get(name, 0)
                if axis is None or np.ndim(value) <= axis or np.shape(value)[axis] != len(miss_rows):
                    raise InferenceError(
                        f"per-sample caching needs outputs that carry the batch (on the leading axis, or where the "
                        f"inputs' batch symbol is: axis {axis}); output {name!r} has shape {np.shape(value)} for a "
                        f"batch of {len(miss_rows)} (use per_sample=False)")
            fresh: dict[bytes, dict[str, np.ndarray]] = {}
            for j, (key, _) in enumerate(first_row.items()):
                fresh[key] = freeze({name: np.take(_as_array(value), [j], axis=out_axes.get(name, 0))
                                     for name, value in out.items()})
                self.store.put(key, fresh[key])
            rows = [row if row is not None else fresh[keys[i]] for i, row in enumerate(rows)]
        names = list(rows[0])  # type: ignore[index]
        result = {}
        for name in names:
            joined = np.concatenate([row[name] for row in rows], axis=out_axes.get(name, 0))  # type: ignore[index]
            joined.flags.writeable = False  # a fresh array: callers cannot reach the cache through it
            result[name] = joined
        return result

    def _count(self, calls: int, samples: int) -> None:
        with self._lock:
            self._inner_calls += calls
            self._samples_sent += samples

    def stats(self) -> dict[str, float]:
        """Hit/miss/eviction/expiry counts, entries and bytes, plus calls that reached the model."""
        with self._lock:
            own = {"inner_calls": self._inner_calls, "samples_sent": self._samples_sent}
        return {**self.store.stats(), **own}

    def clear(self) -> None:
        self.store.clear()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cache_max_entries": self.config.max_entries,
                "cache_max_bytes": self.config.max_bytes, "cache_ttl_s": self.config.ttl_s,
                "cache_per_sample": self.config.per_sample}


"""Runtime metrics for any Predictor stack: one recorder, many writers, pandas and Prometheus out.

A served stack (engine -> cache -> batcher -> router ...) is plain composition, so monitoring is
one more wrapper: ``Instrumented(stack, recorder, model="digits", version="1")`` times every call
and counts requests, errors and batch sizes, labelled by model, version, engine and route. The
wrappers underneath keep their own counters behind a ``stats() -> dict`` method (the convention
the cache, batcher, router and scheduler follow); the recorder polls those into gauges whenever
it is read, so nothing runs in the background and a scrape always sees fresh values.

Each recorder owns its ``prometheus_client.CollectorRegistry`` (never the process-global one), so
two stacks in one notebook, or two tests, never share or clash over metric names. Exact counts
and recent latencies are also kept under one lock for ``to_frame``: the frame is what notebooks
plot, the registry is what a Prometheus server scrapes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.errors import ConfigError, KitError, MissingDependencyError
from kit.profile.stats import latency_summary
from kit.specs import batch_size_of

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LABELS = ("model", "version", "engine", "route")
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                     1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
QUEUE_STATS = ("queue_depth", "queue_requests")  # stats() names read as queue depth (batcher: queue_requests)
_CHILD_ATTRS = ("inner", "predictor", "predictors", "routes", "replicas", "backends", "versions")

LabelKey = tuple[str, str, str, str]


def _import_prometheus():
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("prometheus-client", "Prometheus exposition of kit metrics") from exc
    return prometheus_client


@dataclass
class _Series:
    """Exact counts for one label set, kept beside the Prometheus metrics for frames."""

    requests: int = 0
    errors: int = 0
    samples: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    queue_depth: float = float("nan")
    error_types: dict[str, int] = field(default_factory=dict)
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=10_000))
    # this label set's Prometheus children (requests, latency, batch): ``Metric.labels`` takes a
    # lock and validates the labels, half of ``record``'s cost if looked up on every request
    children: tuple = ()


class MetricsRecorder:
    """Thread-safe store of request metrics; see the module docstring.

    ``window`` bounds the recent latencies kept per label set for percentiles in ``to_frame``
    (the Prometheus histogram counts every request regardless).
    """

    def __init__(self, namespace: str = "kit", window: int = 10_000,
                 latency_buckets_s: Iterable[float] = LATENCY_BUCKETS_S) -> None:
        if window < 1:
            raise ConfigError(f"window must be >= 1 latency sample, got {window}")
        if not namespace.isidentifier():
            raise ConfigError(f"namespace must be a Prometheus-safe identifier, got {namespace!r}")
        prom = _import_prometheus()
        self.window = window
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._series: dict[LabelKey, _Series] = {}
        self._watched: list[tuple[LabelKey, str, Any]] = []
        ns = namespace
        self._requests = prom.Counter(f"{ns}_requests", "Requests answered or failed", LABELS,
                                      registry=self.registry)
        self._errors = prom.Counter(f"{ns}_errors", "Requests that raised", (*LABELS, "error"),
                                    registry=self.registry)
        self._latency = prom.Histogram(f"{ns}_request_latency_seconds", "Request latency", LABELS,
                                       buckets=tuple(latency_buckets_s), registry=self.registry)
        self._batch = prom.Histogram(f"{ns}_batch_size", "Samples per request (leading dimension)", LABELS,
                                     buckets=BATCH_BUCKETS, registry=self.registry)
        self._cache = prom.Counter(f"{ns}_cache_lookups", "Cache lookups by result", (*LABELS, "result"),
                                   registry=self.registry)
        self._queue = prom.Gauge(f"{ns}_queue_depth", "Requests waiting in a queue", LABELS,
                                 registry=self.registry)
        self.registry.register(_StatsCollector(self, f"{ns}_component_stat"))
        self._server: Any = None

    # -- writers ---------------------------------------------------------------------------------
    @staticmethod
    def labels(model: str = "", version: str = "", engine: str = "", route: str = "") -> LabelKey:
        return (str(model), str(version), str(engine), str(route))

    def _get(self, key: LabelKey) -> _Series:
        series = self._series.get(key)
        if series is None:
            children = (self._requests.labels(*key), self._latency.labels(*key), self._batch.labels(*key))
            series = self._series[key] = _Series(latencies_s=deque(maxlen=self.window), children=children)
        return series

    def record(self, latency_s: float, batch_size: int = 1, error: BaseException | str | None = None,
               labels: LabelKey | None = None) -> None:
        """One request: its latency, its batch size and, if it failed, what it raised."""
        key = labels or self.labels()
        error_name = None if error is None else (error if isinstance(error, str) else type(error).__name__)
        with self._lock:
            series = self._get(key)
            series.requests += 1
            if error_name is None:
                series.samples += batch_size
                series.latencies_s.append(latency_s)
            else:
                series.errors += 1
                series.error_types[error_name] = series.error_types.get(error_name, 0) + 1
        requests, latency, batch = series.children
        requests.inc()
        if error_name is None:
            latency.observe(latency_s)
            batch.observe(batch_size)
        else:
            self._errors.labels(*key, error_name).inc()

    def record_cache(self, hit: bool, labels: LabelKey | None = None) -> None:
        """One cache lookup (for caches that report per lookup rather than through ``stats``)."""
        key = labels or self.labels()
        with self._lock:
            series = self._get(key)
            if hit:
                series.cache_hits += 1
            else:
                series.cache_misses += 1
        self._cache.labels(*key, "hit" if hit else "miss").inc()

    def set_queue_depth(self, depth: float, labels: LabelKey | None = None) -> None:
        key = labels or self.labels()
        with self._lock:
            self._get(key).queue_depth = float(depth)
        self._queue.labels(*key).set(depth)

    # -- polling of wrappers' stats() ------------------------------------------------------------
    def watch(self, stack: Predictor, labels: LabelKey | None = None) -> list[str]:
        """Poll every component of ``stack`` that has a ``stats()`` method; returns their names.

        The walk follows ``inner``, ``predictor`` and the collections routers and schedulers hold
        (``predictors``, ``routes``, ``replicas``, ``backends``, ``versions``).
        """
        key = labels or self.labels()
        names = []
        with self._lock:
            known = {id(obj) for _, _, obj in self._watched}
            for name, component in _components(stack):
                if id(component) not in known:
                    self._watched.append((key, name, component))
                    names.append(name)
        return names

    def poll(self) -> list[dict[str, Any]]:
        """Current numeric ``stats()`` values of every watched component, one row per value.

        A component whose ``stats()`` raises a kit error is logged and skipped for this poll;
        ``queue_depth``/``queue_requests`` values also feed the queue-depth gauge, and ``hits``/``misses``
        the cache columns of ``to_frame``.
        """
        with self._lock:
            watched = list(self._watched)
        rows = []
        for key, name, component in watched:
            try:
                stats = component.stats()
            except KitError as exc:
                log.warning("stats() of %s failed: %s", name, exc)
                continue
            for stat, value in _numeric_items(stats):
                rows.append({**dict(zip(LABELS, key)), "component": name, "stat": stat, "value": value})
                if stat in QUEUE_STATS:
                    self.set_queue_depth(value, key)
        return rows

    # -- readers ---------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per label set: requests, errors, latency percentiles (ms), throughput, cache."""
        import pandas as pd

        polled = self.poll()
        with self._lock:
            snapshot = {k: (s.requests, s.errors, s.samples, s.cache_hits, s.cache_misses, s.queue_depth,
                            dict(s.error_types), list(s.latencies_s)) for k, s in self._series.items()}
        stat_hits: dict[LabelKey, list[float]] = {}
        for row in polled:  # caches that count in stats(): fold their hits/misses in
            if row["stat"] in ("hits", "misses"):
                pair = stat_hits.setdefault(tuple(row[k] for k in LABELS), [0.0, 0.0])
                pair[0 if row["stat"] == "hits" else 1] += row["value"]
        rows = []
        for key, (req, err, samples, hits, misses, depth, types, lat) in snapshot.items():
            extra = stat_hits.get(key, [0.0, 0.0])
            hits, misses = hits + extra[0], misses + extra[1]
            summary = latency_summary(lat)
            rows.append({**dict(zip(LABELS, key)), "requests": req, "errors": err,
                         "error_rate": err / req if req else 0.0,
                         "mean_batch_size": samples / (req - err) if req > err else float("nan"),
                         **{k: summary[k] for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")},
                         "cache_hits": hits, "cache_misses": misses,
                         "cache_hit_rate": hits / (hits + misses) if hits + misses else float("nan"),
                         "queue_depth": depth, "error_types": types})
        columns = [*LABELS, "requests", "errors", "error_rate", "mean_batch_size", "p50_ms", "p95_ms", "p99_ms",
                   "mean_ms", "max_ms", "cache_hits", "cache_misses", "cache_hit_rate", "queue_depth",
                   "error_types"]
        return pd.DataFrame(rows, columns=columns)

    def stats_frame(self) -> pd.DataFrame:
        """The polled ``stats()`` values, one row per component and stat."""
        import pandas as pd

        return pd.DataFrame(self.poll(), columns=[*LABELS, "component", "stat", "value"])

    def latencies(self, labels: LabelKey | None = None) -> list[float]:
        """Recent latencies (s) of one label set, or of all of them pooled."""
        with self._lock:
            if labels is not None:
                series = self._series.get(labels)
                return list(series.latencies_s) if series else []
            return [x for s in self._series.values() for x in s.latencies_s]

    def exposition(self) -> str:
        """The Prometheus text format of every metric (wrapper stats polled now)."""
        return _import_prometheus().generate_latest(self.registry).decode("utf-8")

    # -- /metrics endpoint -----------------------------------------------------------------------
    def serve(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve ``/metrics`` over HTTP on ``host:port`` (0: any free port); returns the URL.

        Bound to the loopback interface by default: metrics name models and routes, so exposing
        them beyond this machine is a decision to make explicitly with ``host``.
        """
        if self._server is not None:
            raise ConfigError(f"this recorder already serves metrics at {self.url}")
        try:
            server, _thread = _import_prometheus().start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        self._server = server
        return self.url

    @property
    def url(self) -> str | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def stop(self) -> None:
        """Stop the ``/metrics`` endpoint, if one runs; safe to call more than once."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> MetricsRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _StatsCollector:
    """A custom Prometheus collector: polls watched ``stats()`` at every scrape into one gauge family."""

    def __init__(self, recorder: MetricsRecorder, name: str) -> None:
        self.recorder = recorder
        self.name = name

    def describe(self) -> list:
        return []  # names are dynamic; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(self.name, "Numeric stats() values of watched wrappers",
                                   labels=[*LABELS, "component", "stat"])
        for row in self.recorder.poll():
            family.add_metric([row[k] for k in LABELS] + [row["component"], row["stat"]], row["value"])
        yield family


def _numeric_items(stats: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Flatten a ``stats()`` dict to (dotted name, float) pairs, skipping non-numbers."""
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _numeric_items(value, f"{name}.")
        elif isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, (int, float)) or (hasattr(value, "item") and hasattr(value, "dtype")):
            yield name, float(value)


def _components(stack: Any) -> Iterator[tuple[str, Any]]:
    """Every object below ``stack`` (itself included) with a ``stats()`` method, with a path name."""
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [(getattr(stack, "name", type(stack).__name__), stack)]
    while todo:
        path, obj = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if callable(getattr(obj, "stats", None)) and not isinstance(obj, Instrumented):
            yield f"{type(obj).__name__}:{path}", obj
        for attr in _CHILD_ATTRS:
            child = getattr(obj, attr, None)
            if child is None or isinstance(child, (str, bytes)):
                continue
            if isinstance(child, Mapping):
                items = [(f"{path}/{k}", v) for k, v in child.items()]
            elif isinstance(child, (list, tuple)):
                items = [(f"{path}/{i}", v) for i, v in enumerate(child)]
            else:
                items = [(f"{path}/{getattr(child, 'name', attr)}", child)]
            todo += [(p, v) for p, v in items if hasattr(v, "predict") or callable(getattr(v, "stats", None))]


class Instrumented(Wrapper):
    """A Predictor that records every call of the stack it wraps into a ``MetricsRecorder``.

    Labels default to the stack's own description (its name and engine); ``watch=True`` also
    polls every ``stats()`` method found below it. Errors are recorded with their type and
    re-raised unchanged: monitoring never changes what a caller sees.
    """

    def __init__(self, inner: Predictor, recorder: MetricsRecorder, model: str | None = None,
                 version: str = "", engine: str | None = None, route: str = "", watch: bool = True,
                 name: str | None = None) -> None:
        super().__init__(inner, name=name)
        info = inner.describe() if hasattr(inner, "describe") else {}
        self.recorder = recorder
        self._specs = tuple(getattr(inner, "input_specs", ()) or ()) or None  # each input's batch axis
        self.label_key = recorder.labels(model if model is not None else getattr(inner, "name", ""), version,
                                         engine if engine is not None else info.get("engine", ""), route)
        if watch:
            recorder.watch(inner, self.label_key)

    def predict(self, feeds: Feeds) -> Outputs:
        start = time.perf_counter()
        try:
            outputs = self.inner.predict(feeds)
        except Exception as exc:
            self.recorder.record(time.perf_counter() - start, error=exc, labels=self.label_key)
            raise
        elapsed = time.perf_counter() - start
        self.recorder.record(elapsed, batch_size=batch_size_of(feeds, self._specs, strict=False),
                             labels=self.label_key)
        return outputs

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **dict(zip(LABELS, self.label_key))}

"""Server-side dynamic batching with TensorFlow Serving's knobs, around any Predictor.

Concurrent single requests are merged into one call of the wrapped engine, which pays
where a batch runs faster per sample than single queries (TF SavedModel on CPU, any GPU)
and costs only the wait where it does not (ONNX Runtime CNNs on 2 CPU cores): the
notebook ``05_batching`` measures both. The parameters mean what they mean in TF
Serving's ``BatchingParameters`` (``kit.tfserving.batching_parameters`` writes them out):

- ``max_batch_size``: rows per batch, never more; a request larger than that is refused.
- ``batch_timeout_micros``: how long the oldest request waits for company before an
  incomplete batch runs.
- ``max_enqueued_batches``: open batches the queue holds; a request that fits in none of
  them and finds the queue full is rejected at once with ``Overloaded``.
- ``num_batch_threads``: batches run in parallel.
- ``allowed_batch_sizes``: a batch is padded up to the next allowed size (the padding
  repeats the last row, so it stays a valid input) and the padding is stripped again.
- ``pad_variable_length_inputs``: requests whose non-batch dims differ are zero-padded
  to the largest in the batch; without it such requests go into separate batches.

Each request gets exactly its own rows back. Requests are checked against the model's
input specs when they arrive, and only ever batched with
requests of the same input names, dtypes and shapes (ranks when padding), so a malformed
request cannot break a batch of good ones. When the engine fails a batch of several requests
(one poisonous input among good ones), each request is retried alone, so only the culprit
fails (``isolate_failures``, the default; ``False`` keeps TF Serving's behaviour: the whole
batch fails with the engine's error). Serving errors (``Overloaded``, ``CircuitOpen``...) are
not retried: they say nothing about one request. If a batch thread dies (the engine raised
``SystemExit`` or another ``BaseException``), the batcher logs it, fails every pending and
queued request with an ``InferenceError`` that says so, and refuses new ones. ``close`` drains
or rejects what is pending (``drain_on_close``) and returns within ``close_timeout_s`` whatever
the engine does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config import require_int, resolve
from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.errors import Closed, ConfigError, InferenceError, InputError, KitError, Overloaded, ServingError
from kit.specs import batch_axes, batch_size_of, check_feeds, output_batch_axes, supports_batching

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingConfig:
    """TF Serving's batching parameters plus what to do with pending work at shutdown."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "kit_batch_threads"
    drain_on_close: bool = True
    close_timeout_s: float = 10.0
    isolate_failures: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_batch_sizes", tuple(int(s) for s in self.allowed_batch_sizes))
        for name, minimum in (("max_batch_size", 1), ("max_enqueued_batches", 1), ("num_batch_threads", 1),
                              ("batch_timeout_micros", 0)):
            value = getattr(self, name)
            require_int(name, int(value) if isinstance(value, np.integer) else value, minimum)  # NumPy ints welcome
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(s < 1 for s in sizes) or any(b <= a for a, b in zip(sizes, sizes[1:])):
                raise ConfigError(f"allowed_batch_sizes must be positive and strictly increasing, got {sizes}")
            if sizes[-1] != self.max_batch_size:
                raise ConfigError(f"the last of allowed_batch_sizes {sizes} must equal max_batch_size "
                                  f"({self.max_batch_size}), as TF Serving requires")
        if not self.thread_pool_name:
            raise ConfigError("thread_pool_name must not be empty")
        if not self.close_timeout_s > 0:
            raise ConfigError(f"close_timeout_s must be > 0, got {self.close_timeout_s}")

    def padded_size(self, rows: int) -> int:
        """The batch size a batch of ``rows`` runs at: the next allowed size, or ``rows``."""
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["allowed_batch_sizes"] = list(self.allowed_batch_sizes)
        return record


@dataclass
class _Task:
    feeds: Feeds
    rows: int
    future: Future


@dataclass
class _Batch:
    key: tuple
    created: float
    tasks: list[_Task] = field(default_factory=list)
    rows: int = 0


def _batch_key(feeds: Feeds, pad: bool, axes: Mapping[str, int | None]) -> tuple:
    """Requests batch together only when names, dtypes and shapes off the batch axis (ranks when padding)
    agree, and inputs without a batch axis (a sample rate) are equal."""
    key = []
    for name, value in sorted(feeds.items()):
        a = np.asarray(value)
        axis = axes.get(name, 0)
        if axis is None:
            key.append((name, a.dtype.str, a.shape, a.tobytes()))
        else:
            key.append((name, a.dtype.str, a.ndim if pad else a.shape[:axis] + a.shape[axis + 1:]))
    return tuple(key)


def _merge(tasks: list[_Task], padded: int, pad_lengths: bool, axes: Mapping[str, int | None]
           ) -> dict[str, np.ndarray]:
    """Concatenate the tasks' rows per input along its batch axis, pad variable dims, then pad rows to ``padded``.

    An input without a batch axis is equal in every task (``_batch_key``) and goes in once.
    """
    merged: dict[str, np.ndarray] = {}
    for name in tasks[0].feeds:
        axis = axes.get(name, 0)
        if axis is None:
            merged[name] = np.asarray(tasks[0].feeds[name])
            continue
        parts = [np.asarray(t.feeds[name]) for t in tasks]
        if pad_lengths:
            target = tuple(max(p.shape[i] for p in parts) for i in range(parts[0].ndim))
            parts = [p if all(p.shape[i] == target[i] for i in range(p.ndim) if i != axis) else
                     np.pad(p, [(0, 0) if i == axis else (0, target[i] - p.shape[i]) for i in range(p.ndim)])
                     for p in parts]
        array = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
        extra = padded - array.shape[axis]
        if extra > 0:
            last = np.take(array, [array.shape[axis] - 1], axis=axis)
            array = np.concatenate([array, np.repeat(last, extra, axis=axis)], axis=axis)
        merged[name] = array
    return merged


class DynamicBatcher(Wrapper):
    """A Predictor that merges concurrent requests into batches for the wrapped one."""

    def __init__(self, inner: Predictor, config: BatchingConfig | None = None, name: str | None = None,
                 **overrides: Any) -> None:
        config = resolve(BatchingConfig, config, overrides)
        specs = tuple(getattr(inner, "input_specs", ()) or ())
        if specs:
            ok, why = supports_batching(specs)
            if not ok:
                raise ConfigError(f"cannot batch {getattr(inner, 'name', 'this model')!r}: {why}; serve it "
                                  f"without a DynamicBatcher")
        super().__init__(inner, name)
        self._in_axes: dict[str, int | None] = batch_axes(specs) if specs else {}
        self.config = config
        self._timeout_s = config.batch_timeout_micros / 1e6
        self._cond = threading.Condition()
        self._queue: deque[_Batch] = deque()
        self._closing = False
        self._dead: InferenceError | None = None
        self._in_flight: set[Future] = set()
        self._rows_hist: Counter[int] = Counter()
        self._padded_hist: Counter[int] = Counter()
        self._counts = Counter()
        self._threads = [threading.Thread(target=self._loop, name=f"{config.thread_pool_name}-{i}", daemon=True)
                         for i in range(config.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    # -- requests -------------------------------------------------------------------
    def submit(self, feeds: Feeds) -> Future:
        """Queue one request; the future resolves to exactly its own rows of every output."""
        if self.input_specs:  # a bad request fails alone, here, naming what the model expects
            feeds = check_feeds(self.input_specs, feeds)
        elif not isinstance(feeds, Mapping) or not feeds:
            raise InputError("feeds must be a non-empty mapping of input name to array")
        rows = batch_size_of(feeds, self.input_specs or None)
        if rows > self.config.max_batch_size:
            raise InputError(f"a request of {rows} rows exceeds max_batch_size={self.config.max_batch_size}; "
                             f"send at most that many rows per request")
        if rows < 1:
            raise InputError("a request must hold at least one row")
        key = _batch_key(feeds, self.config.pad_variable_length_inputs, self._in_axes)
        future: Future = Future()
        now = time.perf_counter()
        with self._cond:
            if self._dead is not None:
                raise InferenceError(str(self._dead))
            if self._closing:
                raise Closed(f"batcher {self.name!r} is closed")
            batch = self._open_batch_for(key, rows)
            if batch is None:
                if len(self._queue) >= self.config.max_enqueued_batches:
                    self._counts["rejected"] += 1
                    raise Overloaded(f"batcher {self.name!r} queue is full ({len(self._queue)} batches of up to "
                                     f"{self.config.max_batch_size} rows = max_enqueued_batches); retry later")
                batch = _Batch(key=key, created=now)
                self._queue.append(batch)
                notify = True
            else:
                notify = False
            batch.tasks.append(_Task(feeds, rows, future))
            batch.rows += rows
            self._counts["requests"] += 1
            if notify or batch.rows == self.config.max_batch_size:
                self._cond.notify()
        return future

    def _open_batch_for(self, key: tuple, rows: int) -> _Batch | None:
        """The newest queued batch with the same key and room, TF Serving style (only the tail is open)."""
        for batch in reversed(self._queue):
            if batch.key == key:
                return batch if batch.rows + rows <= self.config.max_batch_size else None
        return None

    def predict(self, feeds: Feeds) -> Outputs:
        return self.submit(feeds).result()

    # -- batch threads --------------------------------------------------------------
    def _next_batch(self) -> _Batch | None:
        """Block until a batch is due (full, timed out, behind others, or draining); None to exit."""
        with self._cond:
            while True:
                if self._queue:
                    head = self._queue[0]
                    wait = head.created + self._timeout_s - time.perf_counter()
                    if (wait <= 0 or head.rows >= self.config.max_batch_size or len(self._queue) > 1
                            or self._closing):
                        self._queue.popleft()
                        self._in_flight.update(t.future for t in head.tasks)
                        return head
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _loop(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._run(batch)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from an engine: nobody may wait for good
            self._die(exc)

    def _die(self, exc: BaseException) -> None:
        """A batch thread is dying: fail every request still waiting, refuse new ones, say why."""
        error = InferenceError(f"batcher {self.name!r} stopped: its batch thread died "
                               f"({type(exc).__name__}: {exc}) while running "
                               f"{getattr(self.inner, 'name', 'the engine')!r}; pending requests failed")
        error.__cause__ = exc
        with self._cond:
            self._dead, self._closing = error, True
            pending = [t.future for b in self._queue for t in b.tasks] + list(self._in_flight)
            self._queue.clear()
            self._in_flight.clear()
            self._cond.notify_all()
        log.error("%s (%d requests)", error, len(pending), exc_info=(type(exc), exc, exc.__traceback__))
        for future in pending:
            self._settle(future, error=error)

    def _attempt(self, tasks: list[_Task], rows: int) -> tuple[int, list[dict[str, np.ndarray]]]:
        """Run ``tasks`` as one batch; (padded size, each task's outputs)."""
        padded = self.config.padded_size(rows)
        merged = _merge(tasks, padded, self.config.pad_variable_length_inputs, self._in_axes)
        outputs = self.inner.predict(merged)
        if self._in_axes:  # outputs whose dims the model leaves unnamed: matched against the inputs' shapes
            axes = output_batch_axes(self.input_specs, self.output_specs, merged, outputs)
        else:
            axes = {name: 0 for name in outputs}
        return padded, self._split(outputs, tasks, padded, axes)

    def _error_for(self, exc: Exception, rows: int) -> KitError:
        if isinstance(exc, KitError):
            return exc
        error = InferenceError(f"batch of {rows} rows failed in {getattr(self.inner, 'name', 'the engine')!r}: "
                               f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _run(self, batch: _Batch) -> None:
        padded = self.config.padded_size(batch.rows)
        results: list[Any] = []
        error: BaseException | None = None
        isolated = False
        try:
            padded, results = self._attempt(batch.tasks, batch.rows)
        except Exception as exc:  # noqa: BLE001 - handed to exactly this batch's requests
            error = self._error_for(exc, batch.rows)
            if self.config.isolate_failures and len(batch.tasks) > 1 and not isinstance(error, ServingError):
                isolated, results = True, []
                for task in batch.tasks:  # one poisonous request must not fail the innocent ones
                    try:
                        results.append(self._attempt([task], task.rows)[1][0])
                    except Exception as single:  # noqa: BLE001 - this request's own error
                        results.append(self._error_for(single, task.rows))
                error = None
        # Counted before any caller wakes, so stats() read after a result already includes its batch.
        with self._cond:
            self._counts["failed_batches"] += int(error is not None or isolated)
            self._counts["isolated_batches"] += int(isolated)
            self._counts["batches"] += 1
            self._counts["rows"] += batch.rows
            self._counts["padding_rows"] += padded - batch.rows
            self._rows_hist[batch.rows] += 1
            self._padded_hist[padded] += 1
            self._in_flight.difference_update(t.future for t in batch.tasks)
        if error is not None:
            for task in batch.tasks:
                self._settle(task.future, error=error)
        else:
            for task, result in zip(batch.tasks, results):
                if isinstance(result, BaseException):
                    self._settle(task.future, error=result)
                else:
                    self._settle(task.future, result=result)

    @staticmethod
    def _split(outputs: Outputs, tasks: list[_Task], padded: int, axes: Mapping[str, int | None]
               ) -> list[dict[str, np.ndarray]]:
        """Each task's rows of every output, cut along the output's batch axis (``output_batch_axes``)."""
        for name, array in outputs.items():
            axis = axes[name]
            if axis is None or np.ndim(array) <= axis or np.shape(array)[axis] != padded:
                raise InferenceError(f"output {name!r} has shape {np.shape(array)}, but batching needs every output "
                                     f"to carry the batch dimension ({padded} rows on axis {axis or 0})")
        results, offset = [], 0
        for task in tasks:
            rows = slice(offset, offset + task.rows)
            results.append({name: array[(slice(None),) * axes[name] + (rows,)]  # type: ignore[operator]
                            for name, array in outputs.items()})
            offset += task.rows
        return results

    @staticmethod
    def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
        try:  # close() may already have failed a request whose engine call overran the timeout
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        except InvalidStateError:
            pass

    # -- introspection and shutdown -------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts so far, the batch-size histograms (rows, and rows after padding) and queue depth."""
        with self._cond:
            return {"requests": self._counts["requests"], "batches": self._counts["batches"],
                    "rows": self._counts["rows"], "padding_rows": self._counts["padding_rows"],
                    "rejected": self._counts["rejected"], "failed_batches": self._counts["failed_batches"],
                    "isolated_batches": self._counts["isolated_batches"],
                    "mean_batch_rows": self._counts["rows"] / self._counts["batches"] if self._counts["batches"]
                    else 0.0,
                    "batch_size_histogram": dict(sorted(self._rows_hist.items())),
                    "padded_size_histogram": dict(sorted(self._padded_hist.items())),
                    "queue_batches": len(self._queue),
                    "queue_requests": sum(len(b.tasks) for b in self._queue),
                    "queue_rows": sum(b.rows for b in self._queue),
                    "in_flight_requests": len(self._in_flight)}

    def to_frame(self) -> pd.DataFrame:
        """Batches run per batch size (rows before padding)."""
        import pandas as pd

        hist = self.stats()["batch_size_histogram"]
        return pd.DataFrame({"batch_rows": list(hist), "batches": list(hist.values())})

    def stop(self, drain: bool | None = None) -> None:
        """Stop taking requests; run (``drain``) or reject what is queued; never hang.

        Requests still unanswered after ``close_timeout_s`` (an engine call that never
        returns) fail with ``Closed``. The wrapped predictor stays open, so several
        batchers can take turns over one engine; ``close`` also closes it.
        """
        drain = self.config.drain_on_close if drain is None else drain
        with self._cond:
            if self._closing:
                return
            self._closing = True
            rejected: list[_Task] = []
            if not drain:
                while self._queue:
                    rejected.extend(self._queue.popleft().tasks)
            self._cond.notify_all()
        for task in rejected:
            self._settle(task.future, error=Closed(f"batcher {self.name!r} closed before this request ran"))
        deadline = time.monotonic() + self.config.close_timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [t for t in self._threads if t.is_alive()]
        if stuck:
            with self._cond:
                leftovers = [t.future for b in self._queue for t in b.tasks] + list(self._in_flight)
                self._queue.clear()
            log.warning("batcher %r: %d batch threads still busy after %.1f s; failing %d requests",
                        self.name, len(stuck), self.config.close_timeout_s, len(leftovers))
            for future in leftovers:
                self._settle(future, error=Closed(f"batcher {self.name!r} closed while this request was pending "
                                                  f"(the engine did not return within close_timeout_s)"))

    def close(self, drain: bool | None = None) -> None:
        """``stop`` (draining or rejecting per ``drain_on_close``), then close the wrapped predictor."""
        self.stop(drain)
        super().close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "batching": self.config.to_record()}

"""A request ledger: proof that every request was answered or failed with a clear error.

``Ledgered`` wraps any Predictor (usually the outermost layer of a served stack) and
writes one entry per request: when it started, how it ended and how long it took. At the
end, ``ledger.check()`` balances the books: nothing in flight once traffic stopped (so
submitted = answered + failed), and every failure a ``KitError`` with a message
(a raw ``KeyError`` or an empty message is not a clear error). A request that vanished
- a dropped future, a swallowed exception - would show up as an entry still open.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kit.engines.base import Feeds, Outputs, Predictor, Wrapper
from kit.errors import KitError

if TYPE_CHECKING:
    import pandas as pd

ANSWERED, FAILED, IN_FLIGHT = "answered", "failed", "in_flight"


@dataclass
class Entry:
    """One request: its id, outcome, error class and message, and latency."""

    request_id: int
    started_s: float
    status: str = IN_FLIGHT
    latency_s: float = float("nan")
    error_type: str = ""
    error: str = ""
    clear: bool = True
    tag: str = ""


class RequestLedger:
    """Thread-safe book of requests; one ledger may be shared by several ``Ledgered`` stacks."""

    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.entries: list[Entry] = []

    def open(self, tag: str = "") -> Entry:
        entry = Entry(next(self._ids), self._clock(), tag=tag)
        with self._lock:
            self.entries.append(entry)
        return entry

    def answered(self, entry: Entry) -> None:
        entry.latency_s = self._clock() - entry.started_s
        entry.status = ANSWERED

    def failed(self, entry: Entry, exc: BaseException) -> None:
        entry.latency_s = self._clock() - entry.started_s
        entry.error_type = type(exc).__name__
        entry.error = str(exc)
        entry.clear = isinstance(exc, KitError) and bool(entry.error.strip())
        entry.status = FAILED

    def _entries(self, tag: str | None) -> list[Entry]:
        with self._lock:
            return [e for e in self.entries if tag is None or e.tag == tag]

    def summary(self, tag: str | None = None) -> dict[str, Any]:
        """Counts per outcome: ``in_flight`` requests still open, ``unclear_errors`` failures without a clear error."""
        return self._summarize(self._entries(tag))

    @staticmethod
    def _summarize(entries: list[Entry]) -> dict[str, Any]:
        answered = sum(e.status == ANSWERED for e in entries)
        failed = [e for e in entries if e.status == FAILED]
        open_ = sum(e.status == IN_FLIGHT for e in entries)
        by_error: dict[str, int] = {}
        for e in failed:
            by_error[e.error_type] = by_error.get(e.error_type, 0) + 1
        return {"submitted": len(entries), "answered": answered, "failed": len(failed), "in_flight": open_,
                "unclear_errors": sum(not e.clear for e in failed),
                "success_rate": answered / len(entries) if entries else float("nan"),
                "failed_by_error": by_error}

    def check(self, tag: str | None = None) -> dict[str, Any]:
        """The summary, after asserting the books balance: nothing open, every failure clear.

        Raises ``AssertionError`` naming the offending request ids; call it once traffic
        has stopped.
        """
        entries = self._entries(tag)  # one snapshot: the summary and the ids below describe the same entries
        summary = self._summarize(entries)
        lost = [e.request_id for e in entries if e.status == IN_FLIGHT]
        unclear = [e.request_id for e in entries if e.status == FAILED and not e.clear]
        if lost:
            raise AssertionError(f"{len(lost)} request(s) neither answered nor failed: ids {lost[:10]}")
        if unclear:
            raise AssertionError(f"{len(unclear)} request(s) failed without a clear kit error: ids {unclear[:10]}")
        return summary

    def to_frame(self) -> pd.DataFrame:
        """One row per request: id, tag, status, latency in ms, error type and message."""
        import pandas as pd

        with self._lock:
            rows = [{"request_id": e.request_id, "tag": e.tag, "status": e.status,
                     "latency_ms": e.latency_s * 1e3, "error_type": e.error_type, "error": e.error,
                     "clear_error": e.clear} for e in self.entries]
        return pd.DataFrame(rows, columns=["request_id", "tag", "status", "latency_ms", "error_type",
                                           "error", "clear_error"])


class Ledgered(Wrapper):
    """Records every request through ``inner`` in ``ledger`` (a new one unless given)."""

    def __init__(self, inner: Predictor, ledger: RequestLedger | None = None, *, tag: str = "",
                 name: str | None = None) -> None:
        super().__init__(inner, name)
        self.ledger = ledger or RequestLedger()
        self.tag = tag

    def predict(self, feeds: Feeds) -> Outputs:
        entry = self.ledger.open(self.tag)
        try:
            outputs = self.inner.predict(feeds)
        except BaseException as exc:
            self.ledger.failed(entry, exc)
            raise
        self.ledger.answered(entry)
        return outputs

    def stats(self) -> dict[str, Any]:
        return self.ledger.summary(self.tag or None)

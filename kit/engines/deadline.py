"""The current request's deadline, shared by whoever sets it and every engine that can honour it.

``kit.serve.Retry`` sets it for the whole request; a remote engine (TF Serving's client) reads it
to bound its own RPC, so a retried request never outlives its deadline inside one attempt. It
lives beside the engines, not in ``kit.serve``, because engines read it and ``kit.serve`` imports
engines: the request-path wrappers depend on engines, never the other way round.
"""

from __future__ import annotations

import contextvars
import time

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("kit_deadline", default=None)
"""Absolute ``time.monotonic()`` by which the current request must finish, set by ``Retry``."""


def remaining_deadline() -> float | None:
    """Seconds left before the enclosing ``Retry`` deadline (``None`` when there is none)."""
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()

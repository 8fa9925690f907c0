"""The Predictor protocol: everything that answers a request is one.

Engines implement it; every runtime strategy (cache, batcher, router, retry, breaker)
wraps a Predictor and is one, so a served stack is plain composition and the load
generator, profiler and tuner drive any of them (tower's ``Service``, Finagle's
"your server as a function").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from kit.specs import TensorSpec

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@runtime_checkable
class Predictor(Protocol):
    """Dict of named arrays in, dict of named arrays out; closable; a context manager."""

    @property
    def input_specs(self) -> Sequence[TensorSpec]: ...

    @property
    def output_specs(self) -> Sequence[TensorSpec]: ...

    def predict(self, feeds: Feeds) -> Outputs: ...

    def close(self) -> None: ...

    def __enter__(self) -> Predictor: ...

    def __exit__(self, *exc: object) -> None: ...


class PredictorBase:
    """Shared plumbing: context manager, idempotent close, a ``describe`` record.

    Subclasses set ``_input_specs``/``_output_specs`` and implement ``predict`` and
    ``_close``. ``close`` may be called any number of times.
    """

    name: str = "predictor"
    _input_specs: tuple[TensorSpec, ...] = ()
    _output_specs: tuple[TensorSpec, ...] = ()
    _closed: bool = False

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self._input_specs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._output_specs

    @property
    def closed(self) -> bool:
        return self._closed

    def predict(self, feeds: Feeds) -> Outputs:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:
        """Release resources; called once."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> PredictorBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What this predictor is and runs on, for results tables and reports."""
        return {"predictor": type(self).__name__, "name": self.name}

    def __repr__(self) -> str:
        ins = ", ".join(str(s) for s in self.input_specs)
        return f"<{type(self).__name__} {self.name!r} inputs=[{ins}]>"


class Wrapper(PredictorBase):
    """A Predictor that wraps another one and forwards specs; closing closes the inner one."""

    def __init__(self, inner: Predictor, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or f"{type(self).__name__.lower()}({getattr(inner, 'name', 'predictor')})"
        self._input_specs = tuple(inner.input_specs)
        self._output_specs = tuple(inner.output_specs)

    def predict(self, feeds: Feeds) -> Outputs:
        return self.inner.predict(feeds)

    def _close(self) -> None:
        self.inner.close()

    def describe(self) -> dict[str, Any]:
        inner = self.inner.describe() if hasattr(self.inner, "describe") else {}
        return {**inner, "wrapped_by": [type(self).__name__, *inner.get("wrapped_by", [])]}

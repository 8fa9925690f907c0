"""Small fakes shared by the serving tests: a predictor whose outcomes are scripted, and a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from kit.engines.base import PredictorBase
from kit.specs import TensorSpec

SPEC_IN = (TensorSpec("x", np.float32, ("batch", 4)),)
SPEC_OUT = (TensorSpec("y", np.float32, ("batch", 4)),)


class Scripted(PredictorBase):
    """Answers ``x + offset``; each call first takes the next outcome from ``script``
    (an exception instance to raise, or None to answer). After the script, it answers."""

    def __init__(self, script: Iterable[BaseException | None] = (), offset: float = 0.0, name: str = "scripted",
                 on_call=None) -> None:
        self.name = name
        self._input_specs, self._output_specs = SPEC_IN, SPEC_OUT
        self.script = list(script)
        self.offset = offset
        self.calls = 0
        self.on_call = on_call
        self._lock = threading.Lock()

    def predict(self, feeds):
        with self._lock:
            self.calls += 1
            outcome = self.script.pop(0) if self.script else None
        if self.on_call is not None:
            self.on_call()
        if outcome is not None:
            raise outcome
        return {"y": np.asarray(feeds["x"], np.float32) + np.float32(self.offset)}


class FakeClock:
    """A monotonic clock that only moves when told to; ``sleep`` advances it."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def feeds(batch: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.ones((batch, 4), np.float32)}

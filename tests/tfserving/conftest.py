"""Helpers shared by the ``kit serve`` tests."""

from __future__ import annotations

import time

import pytest

from kit.engines.base import Wrapper


class Slow(Wrapper):
    """Answers after ``delay_s``: a model that cannot meet a short deadline or that holds a slot."""

    def __init__(self, inner, delay_s: float) -> None:
        super().__init__(inner, "slow")
        self.delay_s = delay_s

    def predict(self, feeds):
        time.sleep(self.delay_s)
        return self.inner.predict(feeds)


@pytest.fixture(scope="session")
def slow():
    """``slow(inner, delay_s)``: wrap a predictor so that it answers after ``delay_s``."""
    return Slow

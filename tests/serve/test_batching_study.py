"""Notebook 05's experiment: curves per engine, the busiest point repeated, the best batcher's gain with spread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kit.engines.base import PredictorBase
from kit.errors import ConfigError, InferenceError
from kit.profile.scenarios import LoadConfig
from kit.serve.batching import BatchingConfig
from kit.serve.batching_study import UNBATCHED, BatchingStudy, study_batching, timeout_of, variant_label
from kit.specs import TensorSpec

LOAD = LoadConfig(warmup_queries=1, min_duration_s=0.15, min_queries=8, drain_timeout_s=2.0)


class PerCall(PredictorBase):
    """One call at a time, each the same sleep whatever the rows: a batch of N costs what one row costs, so
    batching pays. After ``fail_after`` calls every call fails as an engine error does (a kit error: a failed
    query, not a crash)."""

    def __init__(self, delay_s: float = 0.004, fail_after: int | None = None, name: str = "per-call") -> None:
        self.name, self.delay_s, self.fail_after = name, delay_s, fail_after
        self.calls = 0
        self._busy = threading.Lock()
        self._input_specs = (TensorSpec("x", np.float32, ("batch", 2)),)
        self._output_specs = (TensorSpec("y", np.float32, ("batch", 2)),)
        self.close_calls = 0

    def predict(self, feeds):
        with self._busy:  # like an engine that holds the CPU: concurrent calls queue
            self.calls += 1
            time.sleep(self.delay_s)
            if self.fail_after is not None and self.calls > self.fail_after:
                raise InferenceError("engine failed")
        return {"y": feeds["x"] * 2}

    def close(self) -> None:
        self.close_calls += 1
        super().close()


def requests() -> list[dict[str, np.ndarray]]:
    return [{"x": np.ones((1, 2), np.float32)}]


def batchings(*timeouts: int) -> dict[int, BatchingConfig]:
    return {t: BatchingConfig(max_batch_size=8, batch_timeout_micros=t, max_enqueued_batches=64) for t in timeouts}


def test_the_busiest_point_runs_in_rounds_and_the_best_batcher_gains_over_unbatched():
    engine = PerCall()
    study = study_batching({"fake": engine}, batchings(0, 3000), [1, 4], requests(), LOAD, rounds=3)
    assert len(study.repeats) == 2 * 3  # rounds 2 and 3 of the busiest point, three variants each
    curves = study.curves()
    assert set(curves["variant"]) == {UNBATCHED, variant_label(0), variant_label(3000)}
    assert sorted(curves["concurrency"].unique()) == [1, 4] and set(curves["engine"]) == {"fake"}
    assert len(study.busiest) == 3 * 3 and {r["round"] for r in study.busiest} == {0, 1, 2}
    assert study.top == 4 and not study.failures()
    effect = study.effect("fake")
    assert effect.variant in {variant_label(0), variant_label(3000)}
    assert effect.gain.n == 3 and effect.cpu_gain.n == 3
    assert effect.gain.value > 1.0  # four clients share one sleep per batch instead of one each
    histogram = study.histograms[("fake", variant_label(3000))]
    assert max(histogram) > 1 and sum(histogram.values()) > 0  # batches of more than one row were run
    assert engine.close_calls == 0  # the engine stays open; the batchers are stopped


def test_failed_queries_are_named_not_hidden_in_the_repeated_rounds_too():
    # every run takes at least 4 warm-up and 8 measured queries, so round 3 (after 4 runs, 48 calls or more)
    # starts past call 30: a repeat's failures must be named as well as any in the sweep
    study = study_batching({"fake": PerCall(fail_after=30)}, batchings(0), [2], requests(), LOAD, rounds=3)
    lines = study.failures()
    assert {line.split(":")[0] for line in lines} >= {"fake, unbatched, 2 clients (round 3)",
                                                       "fake, batched 0 us, 2 clients (round 3)"}
    assert all("queries failed" in line and "engine failed" in line for line in lines)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rounds": 0}, "rounds must be an int >= 1"),
    ({"rounds": 2.5}, "rounds must be an int >= 1"),
    ({"concurrency_levels": []}, "at least one client count"),
    ({"concurrency_levels": [0, 2]}, "a concurrency level must be an int >= 1"),
    ({"concurrency_levels": [2.7]}, "a concurrency level must be an int >= 1"),
    ({"batchings": {}}, "at least one engine and one batching config"),
    ({"batchings": {100: BatchingConfig(max_batch_size=8, batch_timeout_micros=5000)}},
     "maps 100 to a config with batch_timeout_micros 5000"),
])
def test_bad_settings_are_refused_before_any_load(kwargs, message):
    engine = PerCall()
    args = {"predictors": {"fake": engine}, "batchings": batchings(0), "concurrency_levels": [1],
            "requests": requests(), "load": LOAD, "rounds": 1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        study_batching(**args)
    assert engine.calls == 0


def test_repeated_levels_are_measured_once():
    study = study_batching({"fake": PerCall()}, batchings(0), [2, 1, 2], requests(), LOAD, rounds=1)
    assert sorted(study.curves()["concurrency"]) == [1, 1, 2, 2] and study.top == 2


def test_effect_is_the_best_median_batcher_with_per_round_ratios():
    """Hand-made rounds: the gain is the median of per-round ratios, the CPU gain unbatched over batched."""
    def row(r, variant, samples, cpu):
        return {"engine": "e", "round": r, "variant": variant, "samples_per_s": samples, "cpu_ms_per_sample": cpu}

    busiest = [row(0, UNBATCHED, 100, 4.0), row(0, "batched 0 us", 150, 2.0), row(0, "batched 100 us", 300, 1.0),
               row(1, UNBATCHED, 200, 4.0), row(1, "batched 0 us", 220, 2.0), row(1, "batched 100 us", 300, 2.0),
               row(2, UNBATCHED, 100, 2.0), row(2, "batched 0 us", 130, 1.0), row(2, "batched 100 us", 250, 1.0)]
    effect = BatchingStudy(results=[], repeats=[], busiest=busiest, histograms={}, top=8).effect("e")
    assert effect.variant == "batched 100 us"  # median 300 samples/s against 150
    assert (effect.gain.value, effect.gain.low, effect.gain.high, effect.gain.n) == (2.5, 1.5, 3.0, 3)
    assert effect.cpu_gain.value == 2.0 and effect.cpu_unbatched_ms == 4.0 and effect.cpu_batched_ms == 1.0
    assert effect.pays


def test_effect_of_an_engine_not_studied_says_which_were():
    study = study_batching({"fake": PerCall()}, batchings(0), [1], requests(), LOAD, rounds=1)
    with pytest.raises(ConfigError, match=r"engine 'other'.*\['fake'\]"):
        study.effect("other")


def test_variant_labels_round_trip_and_other_labels_are_refused():
    assert timeout_of(variant_label(100000)) == 100000
    with pytest.raises(ConfigError, match="not a batcher's label"):
        timeout_of(UNBATCHED)

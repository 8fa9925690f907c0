"""Batch gain: interleaved batch-1 vs batch-N rows, median per-round ratios, and the sentence they give."""

from __future__ import annotations

import numpy as np
import pytest

from kit.engines.registry import create_engine
from kit.errors import ConfigError
from kit.profile.batch_gain import BatchGain, measure_batch_gain
from kit.profile.scenarios import LoadConfig


def _rows(engine: str, per_round: list[tuple[float, float]], cpu: tuple[float, float] = (2.0, 1.0)):
    rows = []
    for r, (one, full) in enumerate(per_round):
        rows.append({"engine": engine, "batch": 1, "round": r, "samples_per_s": one, "cpu_ms_per_sample": cpu[0]})
        rows.append({"engine": engine, "batch": 8, "round": r, "samples_per_s": full, "cpu_ms_per_sample": cpu[1]})
    return rows


def test_gains_are_medians_of_per_round_ratios_and_decide_whether_batching_pays():
    gain = BatchGain(batch_size=8, rows=_rows("fast", [(100, 300), (50, 200), (100, 500)])
                     + _rows("flat", [(100, 100), (100, 110), (100, 90)], cpu=(1.0, 1.0)))
    assert gain.gains() == pytest.approx({"fast": 4.0, "flat": 1.0})
    assert gain.cpu_gains() == pytest.approx({"fast": 2.0, "flat": 1.0})
    fast = gain.gain_figures()["fast"]  # the same median, with the per-round ratios' range
    assert (fast.value, fast.low, fast.high, fast.n, fast.better) == pytest.approx((4.0, 3.0, 5.0, 3, "higher"))
    assert gain.pays("fast") and not gain.pays("flat")
    table = gain.to_frame()
    assert list(table.index) == ["fast", "flat"]
    assert table.loc["fast", "throughput gain, batch 8 / 1"] == pytest.approx(4.0)
    assert table.loc["fast", "samples/s at batch 1"] == pytest.approx(100.0)
    assert "4.00x" in gain.describe("fast") and "batching pays" in gain.describe("fast")
    assert "does not pay" in gain.describe("flat") and "3 interleaved rounds" in gain.describe("flat")


def test_measure_batch_gain_interleaves_every_engine_and_batch_in_each_round(add_onnx):
    engines = {"a": create_engine(add_onnx), "b": create_engine(add_onnx)}
    width = engines["a"].input_specs[0].shape[-1]
    one = {"x": np.ones((1, width), np.float32)}
    full = {"x": np.ones((4, width), np.float32)}
    try:
        gain = measure_batch_gain(engines, one, full, rounds=2,
                                  config=LoadConfig(warmup_queries=1, min_duration_s=0.01, min_queries=3))
    finally:
        for e in engines.values():
            e.close()
    order = [(r["round"], r["engine"], r["batch"]) for r in gain.rows]
    assert order == [(0, "a", 1), (0, "a", 4), (0, "b", 1), (0, "b", 4),
                     (1, "a", 1), (1, "a", 4), (1, "b", 1), (1, "b", 4)]
    assert gain.batch_size == 4 and set(gain.gains()) == {"a", "b"}
    assert all(v > 0 for v in gain.gains().values())


def test_measure_batch_gain_checks_its_inputs():
    with pytest.raises(ConfigError, match="rounds"):
        measure_batch_gain({"a": object()}, {}, {"x": np.ones((4, 1))}, rounds=0)
    with pytest.raises(ConfigError, match="at least 2 rows"):
        measure_batch_gain({"a": object()}, {}, {"x": np.ones((1, 1))})

"""Figure: a published figure with its range over rounds, read back from every form a results file holds."""

from __future__ import annotations

import pandas as pd
import pytest

from kit.errors import ConfigError
from kit.profile.figures import Figure, ratio_rounds


def test_figure_json_round_trip_and_old_forms():
    figure = Figure.from_rounds([3.0, 1.0, 2.0, float("nan")], unit="ms", better="lower")
    assert (figure.value, figure.low, figure.high, figure.n) == (2.0, 1.0, 3.0, 3)
    assert Figure.from_json(figure.to_json()) == figure
    assert Figure.from_json({"value": 5.0, "spread": 1.0}) == Figure(5.0, 4.0, 6.0, 2)
    assert Figure.from_json(7) == Figure.point(7.0) and not Figure.point(7.0).has_spread
    assert Figure.from_json("7 ms") is None and Figure.from_json({"value": None}) is None
    with pytest.raises(ConfigError):
        Figure(5.0, 6.0, 7.0)  # a value outside its own range
    with pytest.raises(ConfigError):
        Figure(1.0, 1.0, 1.0, better="up")


def test_from_columns_reads_a_summary_or_evaluate_row():
    row = pd.Series({"p50_ms": 2.0, "p50_low_ms": 1.5, "p50_high_ms": 2.5, "rounds": 3})
    assert Figure.from_columns(row, "p50_ms", "ms", "lower") == Figure(2.0, 1.5, 2.5, 3, "ms", "lower")
    one_round = Figure.from_columns(pd.Series({"p50_ms": 2.0, "rounds": 1}), "p50_ms")
    assert one_round == Figure.point(2.0) and "[" not in str(one_round)
    pooled = Figure.from_columns({"speedup": 1.9, "speedup_low": 1.7, "speedup_high": 1.85, "rounds": 5}, "speedup")
    assert (pooled.low, pooled.high, pooled.n) == (1.7, 1.9, 5)  # widened to hold the pooled value
    with pytest.raises(ConfigError):
        Figure.from_columns({"p50_ms": "fast"}, "p50_ms")


def test_ratio_rounds_pairs_rounds_and_skips_what_cannot_divide():
    assert ratio_rounds([2.0, 3.0, 4.0], [1.0, 0.0, 2.0]) == [2.0, 2.0]
    assert ratio_rounds(float("nan"), [1.0]) == []  # a frame row without rounds


def test_from_rounds_can_keep_a_pooled_value():
    figure = Figure.from_rounds([1.0, 2.0, 3.0], unit="ms", better="lower", value=3.5)
    assert (figure.value, figure.low, figure.high, figure.n) == (3.5, 1.0, 3.5, 3)
    assert Figure.from_rounds([], value=2.0) == Figure.point(2.0)
    assert not Figure.from_rounds([4.0]).has_spread  # one round says nothing about noise
    iqr = Figure.from_rounds([1.0, 2.0, 3.0, 4.0, 100.0], interval="iqr")
    assert (iqr.value, iqr.low, iqr.high) == (3.0, 2.0, 4.0)


def test_from_samples_gives_a_percentile_with_its_bootstrap_interval():
    import numpy as np

    samples = np.random.default_rng(1).exponential(2.0, 400)
    fig = Figure.from_samples(samples, 99, "ms", "lower")
    assert fig.value == pytest.approx(np.percentile(samples, 99))
    assert fig.low < fig.value < fig.high and fig.n == 400 and fig.has_spread
    assert fig == Figure.from_samples(samples, 99, "ms", "lower")  # seeded: the same run gives the same interval
    assert not Figure.from_samples([3.0], 99).has_spread and Figure.from_samples([3.0], 99).value == 3.0
    assert not Figure.from_samples([2.0, 2.0, 2.0], 50).has_spread
    with pytest.raises(ConfigError, match="percentile"):
        Figure.from_samples(samples, 101)

"""Benchmark gates: a target fails only when missed by more than the run's own spread; no clock involved."""

from __future__ import annotations

import math

import pytest

from kit.errors import ConfigError
from kit.profile.figures import Figure
from kit.profile.targets import FAIL, NOISE, PASS, Targets, check, judge


def test_a_met_target_passes():
    assert judge("x", Figure(2.0, 1.8, 2.3, 5, "x"), 1.7, "higher").status == PASS
    assert judge("t", Figure(0.8, 0.5, 1.4, 5, "us"), 1.0, "lower").status == PASS


def test_a_miss_within_the_measured_range_is_noise_not_a_failure():
    verdict = judge("x", Figure(1.6, 1.4, 1.75, 5, "x"), 1.7, "higher")  # a round reached 1.75
    assert verdict.status == NOISE and not verdict.failed
    assert "range 1.4–1.75 over n=5" in verdict.line and "target >= 1.7 x" in verdict.line
    assert judge("t", Figure(1.2, 0.9, 1.5, 3), 1.0, "lower").status == NOISE


def test_a_miss_beyond_the_range_fails():
    assert judge("x", Figure(1.2, 1.1, 1.3, 5), 1.7, "higher").failed
    assert judge("t", Figure(1.5, 1.2, 1.9, 5), 1.0, "lower").failed


def test_without_spread_or_with_nan_a_miss_fails():
    assert judge("x", Figure.point(1.69), 1.7, "higher").status == FAIL
    assert judge("x", Figure.point(math.nan), 1.7, "higher").status == FAIL
    with pytest.raises(ConfigError):
        judge("x", Figure.point(1.0), 1.0, "up")


def test_targets_gate_only_under_check(capsys):
    targets = Targets("bench_demo.py")
    targets.rounds("overhead", [0.5, 0.7, 0.6], 1.0, "lower", unit="us")
    targets.check("answers equal", True)
    assert targets.finish(check=False) == 0 and capsys.readouterr().out == ""
    assert targets.finish(check=True) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "2/2 passed" in out
    targets.check("nothing lost", False, "3 requests lost")
    assert targets.finish(check=True) == 1
    assert "FAILED: nothing lost" in capsys.readouterr().out


def test_many_rounds_are_judged_on_their_quartiles_not_their_outliers():
    targets = Targets("bench_demo.py")
    rounds = [1.5] * 10 + [0.1]  # one round met the target by luck; the typical round missed it
    assert targets.rounds("overhead", rounds, 1.0, "lower").failed
    assert not targets.rounds("overhead", rounds[-4:], 1.0, "lower").failed  # 4 rounds: min-max, a miss in noise


def test_a_script_without_a_speed_target_says_so(capsys):
    targets = Targets("bench_demo.py", speed_target=False)
    targets.check("answers equal", True)
    assert targets.finish(check=True) == 0
    assert "no speed target" in capsys.readouterr().out
    assert check("x", False).failed

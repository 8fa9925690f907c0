"""find_max_rate says whether it bracketed the limit, with an injected run (no clock, no engine)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import kit.profile.search as search_module
from kit.profile.results import LoadResult
from kit.profile.search import find_max_rate


def _fake_run(limit_qps: float, calls: list[float]):
    """A stand-in for ``kit.profile.loadgen.run``: a run meets its target iff its rate is at most ``limit_qps``."""

    def run(predictor, scenario, feeds=None, config=None, label=""):
        qps = scenario.target_qps
        calls.append(qps)
        latency = 0.001 if qps <= limit_qps else 10.0
        n = 20
        zeros = np.zeros(n)
        params = {"target_qps": qps, "latency_target_ms": scenario.latency_target_ms}
        return LoadResult(scenario="server", params=params,
                          scheduled_s=zeros, sent_s=zeros, done_s=zeros + latency, ok=np.ones(n, dtype=bool),
                          samples_per_query=1, duration_s=1.0, label=label)

    return run


def test_a_search_that_only_doubles_says_it_did_not_bracket(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(search_module, "run", _fake_run(limit_qps=1000.0, calls=calls))
    search = find_max_rate(object(), 50.0, start_qps=100.0, max_runs=3)
    assert calls == [100.0, 200.0, 400.0]
    assert search.best_qps == 400.0 and not search.bracketed and math.isinf(search.missed_qps)
    assert search.describe() == "≥ 400.0 q/s, not bracketed"
    summary = search.summary()
    assert summary["bracketed"] is False and "not bracketed" in summary["result"]


def test_a_search_that_meets_a_missed_rate_brackets_the_limit(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(search_module, "run", _fake_run(limit_qps=300.0, calls=calls))
    search = find_max_rate(object(), 50.0, start_qps=100.0, max_runs=6, tolerance=0.1)
    assert search.bracketed and 200.0 <= search.best_qps <= 300.0 < search.missed_qps <= 400.0
    assert search.describe().startswith(f"{search.best_qps:.1f} q/s (missed at")
    assert search.summary()["bracketed"] is True


def test_a_search_where_no_rate_met_gives_an_upper_bound_only(monkeypatch):
    calls: list[float] = []
    monkeypatch.setattr(search_module, "run", _fake_run(limit_qps=10.0, calls=calls))
    search = find_max_rate(object(), 50.0, start_qps=100.0, max_runs=3)
    assert search.best is None and not search.bracketed
    assert search.describe() == f"< {min(calls):.1f} q/s, no rate met the target"


@pytest.mark.parametrize("limit", [150.0, 700.0])
def test_starting_at_the_expected_limit_brackets_it_within_three_runs(monkeypatch, limit):
    monkeypatch.setattr(search_module, "run", _fake_run(limit_qps=limit, calls=[]))
    search = find_max_rate(object(), 50.0, start_qps=400.0, max_runs=3)
    assert search.bracketed

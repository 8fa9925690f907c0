"""Fault study: five stacks, one seeded fault sequence, an outage round, and books that balance."""

from __future__ import annotations

import pytest
from serve_fakes import Scripted, feeds

from kit.errors import ConfigError
from kit.serve.fault_study import ALL, BASELINE, BREAKER, STACKS, UNPROTECTED, FaultStudyConfig, run_fault_study
from kit.serve.faults import FaultConfig
from kit.serve.ledger import RequestLedger
from kit.serve.resilience import BreakerConfig, RetryPolicy


def _config(**changes) -> FaultStudyConfig:
    base = dict(faults=FaultConfig(error_rate=0.5, hang_s=0.02, seed=1), requests=30, rounds=3, timeout_s=0.005,
                retry=RetryPolicy(max_attempts=2, base_delay_s=0.0, max_delay_s=0.0, deadline_s=1.0),
                breaker=BreakerConfig(failure_threshold=2, cool_down_s=0.01))
    return FaultStudyConfig(**{**base, **changes})


def test_every_stack_sees_every_request_and_the_books_balance():
    made: list[Scripted] = []

    def make_engine():
        made.append(Scripted())
        return made[-1]

    wrapped: list[str] = []
    ledger = RequestLedger()
    study = run_fault_study(make_engine, feeds(), _config(), ledger=ledger,
                            wrap=lambda name, stack: wrapped.append(name) or stack)
    try:
        table = study.to_frame().set_index("stack")
        assert list(table.index) == list(STACKS) and wrapped == list(STACKS)
        assert (table.requests == 30).all() and (table.answered + table.failed == table.requests).all()
        assert ledger.check()["in_flight"] == 0  # every failure a clear kit error, nothing lost
        assert table.loc[BASELINE, "success_rate"] == 1.0
        assert table.loc[UNPROTECTED, "failed"] == study.injectors[UNPROTECTED].stats()["errors"] > 0
        # a healthy fallback answers whatever the primary fails
        assert table.loc[BREAKER, "success_rate"] == 1.0 and table.loc[ALL, "success_rate"] == 1.0
        assert table.loc[BREAKER, "breaker_opened"] >= 1
        assert all(i.config.hang_rate == 0.0 for i in study.injectors.values())  # the outage is over
        assert "Unprotected, the primary answered" in study.describe() and "5 ms timeout" in study.describe()
    finally:
        study.close()
    assert len(made) == 7  # baseline, four primaries, two fallbacks: no two stacks share an engine


def test_the_middle_round_is_an_outage_for_every_faulty_primary():
    study = run_fault_study(Scripted, feeds(), _config(faults=FaultConfig(hang_s=0.001, seed=0)))
    try:
        assert study.config.outage_round == 1
        assert all(i.stats()["hangs"] >= 1 for i in study.injectors.values())
    finally:
        study.close()


@pytest.mark.parametrize("changes", [dict(rounds=2), dict(requests=2), dict(timeout_s=0)])
def test_bad_settings_raise_config_error(changes):
    with pytest.raises(ConfigError):
        _config(**changes)

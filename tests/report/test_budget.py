import pytest

from kit.errors import ConfigError
from kit.report.budget import affordable, capped_note, request_seconds


class Slow:
    def __init__(self):
        self.calls = 0

    def predict(self, feeds):
        self.calls += 1
        return feeds


def test_request_seconds_warms_up_then_takes_the_median():
    p = Slow()
    assert request_seconds(p, {"x": 1}, repeats=3) >= 0.0
    assert p.calls == 4
    with pytest.raises(ConfigError):
        request_seconds(p, {}, repeats=0)


def test_affordable_caps_to_the_budget_and_keeps_a_floor():
    assert affordable(200, 0.0001, budget_s=60, runs=8) == 200  # a small model: everything asked
    assert affordable(200, 0.3, budget_s=60, runs=8) == 25  # 60 / (0.3 * 8)
    assert affordable(200, 10.0, budget_s=60, runs=8) == 4  # the floor
    assert affordable(2, 10.0, budget_s=60, runs=8) == 2  # never more than asked
    assert affordable(50, 0.0, budget_s=60) == 50
    with pytest.raises(ConfigError):
        affordable(0, 0.1, budget_s=60)
    with pytest.raises(ConfigError):
        affordable(10, 0.1, budget_s=0)


def test_capped_note_says_what_and_why_only_when_capped():
    assert capped_note("evaluation samples", 200, 200, 0.3, 60) == ""
    note = capped_note("evaluation samples", 200, 25, 0.3, 60)
    assert note.startswith("evaluation samples: 25 of the 200 asked") and "300 ms" in note and "60 s" in note

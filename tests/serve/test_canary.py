"""Canary rollout: a healthy release is promoted, a failing one rolled back, every request on the books."""

from __future__ import annotations

import pytest
from serve_fakes import SPEC_IN, SPEC_OUT, Scripted, feeds

from kit.engines.base import PredictorBase
from kit.errors import ConfigError, InferenceError
from kit.serve.canary import CanaryConfig, roll_out, rollouts_frame
from kit.serve.ledger import RequestLedger


class LabelView(PredictorBase):
    """Resolves its label at every call, as the registry's own views do."""

    def __init__(self, registry: FakeRegistry, label: str) -> None:
        self.registry, self.label = registry, label
        self.name = f"view({label})"
        self._input_specs, self._output_specs = SPEC_IN, SPEC_OUT

    def predict(self, feeds):
        return self.registry.versions[self.registry.labels[self.label]].predict(feeds)


class FakeRegistry:
    def __init__(self, versions: dict[int, PredictorBase]) -> None:
        self.versions = versions
        self.labels = {"stable": 1}
        self.events: list[tuple[str, int]] = []

    def set_label(self, label, version):
        self.labels[label] = version

    def remove_label(self, label):
        self.events.append(("remove", self.labels.pop(label)))

    def predictor(self, version=None, label=None):
        return LabelView(self, label)

    def promote(self, version=None, label=None, source_label="canary"):
        self.labels["stable"] = self.labels.pop(source_label)
        self.events.append(("promote", self.labels["stable"]))
        return self.labels["stable"]


def test_a_healthy_release_passes_every_step_and_is_promoted():
    registry = FakeRegistry({1: Scripted(), 2: Scripted(offset=1.0)})
    ledger = RequestLedger()
    rollout = roll_out(registry, 2, feeds(), CanaryConfig(steps=(10, 50), requests_per_step=40, max_error_rate=0.0),
                       ledger=ledger)
    assert rollout.promoted and [s.decision for s in rollout.steps] == ["continue", "promote"]
    assert registry.labels == {"stable": 2} and registry.events == [("promote", 2)]
    assert all(s.canary_errors == 0 and s.canary_calls > 0 for s in rollout.steps)
    assert sum(s.canary_calls for s in rollout.steps) == registry.versions[2].calls
    assert ledger.check("canary v2")["answered"] == 80
    assert "promoted" in rollout.describe()


def test_a_failing_release_is_rolled_back_at_the_first_bad_step_and_users_see_no_error():
    failing = Scripted(script=[InferenceError("bad release")] * 1000)
    registry = FakeRegistry({1: Scripted(), 3: failing})
    ledger = RequestLedger()
    rollout = roll_out(registry, 3, feeds(), CanaryConfig(steps=(50, 100), requests_per_step=20, max_error_rate=0.02),
                       ledger=ledger)
    assert not rollout.promoted and len(rollout.steps) == 1
    step = rollout.steps[0]
    assert step.decision == "roll back" and step.canary_error_rate == 1.0 and step.stable_version == 1
    assert "canary" not in registry.labels and registry.labels["stable"] == 1
    assert ledger.check("canary v3")["answered"] == 20  # the stable fallback answered every canary failure
    assert "rolled back" in rollout.describe()
    assert len(rollouts_frame([rollout])) == 1


def test_the_decision_uses_each_step_s_own_errors_not_the_running_total():
    # fails its first 3 calls only: step 1 is bad under a 0 threshold; with a lenient threshold step 2 is clean
    registry = FakeRegistry({1: Scripted(), 2: Scripted(script=[InferenceError("warm-up")] * 3)})
    rollout = roll_out(registry, 2, feeds(), CanaryConfig(steps=(100, 100), requests_per_step=10, max_error_rate=0.5))
    assert [s.canary_errors for s in rollout.steps] == [3, 0] and rollout.promoted


@pytest.mark.parametrize("kwargs", [dict(steps=()), dict(steps=(0,)), dict(steps=(101,)),
                                    dict(requests_per_step=0), dict(max_error_rate=1.5)])
def test_bad_settings_raise_config_error(kwargs):
    base = dict(steps=(5, 50), requests_per_step=10, max_error_rate=0.02)
    with pytest.raises(ConfigError):
        CanaryConfig(**{**base, **kwargs})

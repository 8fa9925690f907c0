"""Canary rollout: move a growing share of traffic to a new version, promote it or roll it back.

A release goes through ``steps`` (percentages of traffic) behind a weighted split between the
``stable`` and ``canary`` labels of a version registry. After each step the canary's own error
rate *in that step* is compared with ``max_error_rate``: above it the canary label is removed at
once (roll back); a release that passes every step is promoted (canary becomes stable). A
fallback to stable answers whatever the canary fails, so users never see a bad canary's errors:
the decision rests on the canary route's own counts, not on what users saw.

The registry is any object with TF Serving-style labels (``kit.tfserving.ModelRegistry``
is one); it is typed by a Protocol here so this request-path room never imports the
deployment room.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from kit.config import require_int
from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, KitError
from kit.serve.ledger import Ledgered, RequestLedger
from kit.serve.routing import Router, WeightedSplit

if TYPE_CHECKING:
    import pandas as pd

CONTINUE, ROLL_BACK, PROMOTE = "continue", "roll back", "promote"


class LabelledRegistry(Protocol):
    """What a rollout needs from a version registry: labels, a view per label, promote."""

    @property
    def labels(self) -> dict[str, int]: ...

    def set_label(self, label: str, version: int) -> None: ...

    def remove_label(self, label: str) -> None: ...

    def predictor(self, version: int | None = None, label: str | None = None) -> Predictor: ...

    def promote(self, version: int | None = None, label: str | None = None, source_label: str = "canary") -> int: ...


@dataclass(frozen=True)
class CanaryConfig:
    """Steps (traffic %, in order), requests sent at each step, and the error rate that rolls back."""

    steps: tuple[float, ...]
    requests_per_step: int
    max_error_rate: float
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        if not self.steps or any(not 0 < s <= 100 for s in self.steps):
            raise ConfigError(f"canary steps must be percentages in (0, 100], got {list(self.steps)}")
        require_int("requests_per_step", self.requests_per_step, minimum=1)
        if not 0 <= self.max_error_rate <= 1:
            raise ConfigError(f"max_error_rate must be in [0, 1], got {self.max_error_rate}")


@dataclass(frozen=True)
class CanaryStep:
    """One step of a rollout: the canary's calls and errors in that step, and what was decided."""

    version: int
    canary_percent: float
    requests: int
    canary_calls: int
    canary_errors: int
    canary_error_rate: float
    stable_version: int
    decision: str


@dataclass(frozen=True)
class Rollout:
    """Every step of one release's rollout and whether it ended promoted."""

    version: int
    steps: list[CanaryStep] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return bool(self.steps) and self.steps[-1].decision == PROMOTE

    @property
    def max_error_rate(self) -> float:
        return max((s.canary_error_rate for s in self.steps), default=0.0)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([asdict(s) for s in self.steps])

    def describe(self) -> str:
        """One sentence: how far the release went and why it ended as it did."""
        last = self.steps[-1]
        if self.promoted:
            return (f"Version {self.version} passed {len(self.steps)} canary step(s) with at most "
                    f"{self.max_error_rate:.2%} errors and was promoted.")
        return (f"Version {self.version} failed {last.canary_error_rate:.1%} of its canary calls at "
                f"{last.canary_percent:g} % and was rolled back.")


def roll_out(registry: LabelledRegistry, version: int, feeds: Feeds, config: CanaryConfig,
             ledger: RequestLedger | None = None) -> Rollout:
    """Send ``config.steps`` of traffic to ``version`` as the canary, then promote or roll back.

    Requests are sent one after another with ``feeds``; a ledger, when given, records each of them
    under the tag ``"canary v<version>"``. A rollback removes the canary label; a promotion makes the
    version stable and keeps the old stable loaded for the registry's own rollback.
    """
    registry.set_label("canary", version)
    split = WeightedSplit.canary("stable", "canary", 0, seed=config.seed)
    router = Router({"stable": registry.predictor(label="stable"), "canary": registry.predictor(label="canary")},
                    split, fallback=("stable",))
    stack: Predictor = Ledgered(router, ledger, tag=f"canary v{version}") if ledger is not None else router
    steps: list[CanaryStep] = []
    before = {"calls": 0, "errors": 0}
    for percent in config.steps:
        split.set_weights({"stable": 100 - percent, "canary": percent})
        for _ in range(config.requests_per_step):
            try:
                stack.predict(feeds)
            except KitError:
                pass  # stable failed too: the ledger (if any) records it, the canary's counts decide
        now = router.stats()["routes"]["canary"]
        calls, errors = now["calls"] - before["calls"], now["errors"] - before["errors"]
        before = now
        rate = errors / calls if calls else 0.0
        decision = ROLL_BACK if rate > config.max_error_rate else CONTINUE
        steps.append(CanaryStep(version=version, canary_percent=percent, requests=config.requests_per_step,
                                canary_calls=calls, canary_errors=errors, canary_error_rate=rate,
                                stable_version=registry.labels["stable"], decision=decision))
        if decision == ROLL_BACK:
            split.set_weights({"stable": 1, "canary": 0})
            registry.remove_label("canary")
            return Rollout(version, steps)
    registry.promote()
    steps[-1] = CanaryStep(**{**asdict(steps[-1]), "decision": PROMOTE})
    return Rollout(version, steps)


def rollouts_frame(rollouts: Sequence[Rollout]) -> pd.DataFrame:
    """All steps of several rollouts, one row per step."""
    import pandas as pd

    return pd.concat([r.to_frame() for r in rollouts], ignore_index=True)

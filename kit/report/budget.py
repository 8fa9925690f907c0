"""How many samples a notebook can afford on a slow model, from one measured request.

The quick profile asks for sample counts that suit the zoo's small models (200 evaluation samples of
the 8x8 digits take milliseconds); a user's 640x640 detector takes a third of a second per request, and
the same counts turn a three-minute report into half an hour. A notebook measures one request of the
model it was given and caps its counts so its quality checks fit a time budget, and says so::

    seconds = request_seconds(engine, ds.batches(1)[0])
    n = affordable(eval_samples, seconds, budget_s=60, runs=8)   # 8 models each run n samples
    print(capped_note("evaluation samples", eval_samples, n, seconds, 60))
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kit.errors import ConfigError


def request_seconds(predictor: Any, feeds: Mapping[str, Any], repeats: int = 3) -> float:
    """Median wall time of one ``predictor.predict(feeds)`` after one unmeasured warm-up call."""
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    predictor.predict(feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(feeds)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def affordable(wanted: int, request_s: float, budget_s: float, runs: int = 1, floor: int = 4) -> int:
    """``wanted``, or fewer so that ``runs`` passes over the samples at ``request_s`` each fit ``budget_s``.

    Never below ``floor`` (a quality figure on fewer samples says little) unless fewer are wanted.
    """
    if wanted < 1 or runs < 1 or floor < 1:
        raise ConfigError(f"wanted, runs and floor must be >= 1, got {wanted}, {runs}, {floor}")
    if not budget_s > 0:
        raise ConfigError(f"budget_s must be > 0, got {budget_s}")
    if request_s <= 0:
        return wanted
    return max(min(wanted, floor), min(wanted, int(budget_s / (request_s * runs))))


def capped_note(what: str, wanted: int, got: int, request_s: float, budget_s: float) -> str:
    """One line saying a count was capped and why ('' when it was not)."""
    if got >= wanted:
        return ""
    return (f"{what}: {got} of the {wanted} asked, since one request takes {request_s * 1e3:.0f} ms here and these "
            f"checks are kept to about {budget_s:g} s (pass data or a smaller count to choose)")

"""Benchmark targets as a gate: each target judged against the noise its own run measured.

A benchmark in ``benchmarks/`` states targets ("kit overhead <= 1 us per call", "int8 >= 1.7x
float32") and measures each figure interleaved in rounds, so every figure comes with its range
over those rounds (a ``Figure``). ``benchmarks/<script>.py --check`` exits non-zero when a target
is *missed by more than that measured noise*:

- ``PASS``: the figure (the median over rounds) meets the target;
- ``PASS (noise)``: the median misses, but the range over rounds still reaches the target, so
  the miss is within what this run's own rounds disagree by; reported, does not fail the gate;
- ``FAIL``: the whole range misses (for a higher-is-better target, even the best round is below
  it), or the figure has no measured spread and misses, or it is NaN.

The range is min–max over the rounds; with ``IQR_FROM`` rounds or more (a script timing
dozens of short rounds) it is the inter-quartile range, since min–max over many rounds is set
by the one round that lost the CPU.

Correctness assertions (answers equal, nothing lost) are checks too: ``FAIL`` when they do not
hold. A script without a numeric target says so (``no speed target``) and gates only on its
correctness checks. The logic is pure (no timing here), so it is tested without a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kit.errors import ConfigError
from kit.profile.figures import Figure

PASS, NOISE, FAIL = "PASS", "PASS (noise)", "FAIL"
IQR_FROM = 8
"""From this many rounds on, ``Targets.rounds`` judges against the inter-quartile range, not min–max."""


@dataclass(frozen=True)
class Verdict:
    """One judged target or correctness check, and the line that reports it."""

    name: str
    status: str  # PASS, PASS (noise) or FAIL
    line: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def judge(name: str, figure: Figure, target: float, better: str) -> Verdict:
    """Judge ``figure`` against ``target`` (``better``: ``"higher"`` means the figure must be >= target)."""
    if better not in ("higher", "lower"):
        raise ConfigError(f"a target's better side must be 'higher' or 'lower', got {better!r}")
    sign = ">=" if better == "higher" else "<="
    unit = f" {figure.unit}" if figure.unit else ""
    spread = (f"range {figure.low:.4g}–{figure.high:.4g} over n={figure.n}" if figure.has_spread
              else "no spread measured")
    if not math.isfinite(figure.value):
        status = FAIL
    elif (figure.value >= target) if better == "higher" else (figure.value <= target):
        status = PASS
    elif figure.has_spread and ((figure.high >= target) if better == "higher" else (figure.low <= target)):
        status = NOISE  # the median misses, but a round of this same run met it
    else:
        status = FAIL
    return Verdict(name, status, f"{status:<12} {name}: {figure.value:.4g}{unit} ({spread}); target {sign} "
                                 f"{target:g}{unit}")


def check(name: str, ok: bool, detail: str = "") -> Verdict:
    """A correctness assertion (answers equal, nothing lost) as a gate line."""
    status = PASS if ok else FAIL
    return Verdict(name, status, f"{status:<12} {name}" + (f": {detail}" if detail else ""))


@dataclass
class Targets:
    """What one benchmark run checked; ``finish`` prints the gate and gives its exit status.

    ``speed_target=False`` for a script with no numeric target: its gate line says so.
    """

    script: str
    speed_target: bool = True
    verdicts: list[Verdict] = field(default_factory=list)

    def figure(self, name: str, figure: Figure, target: float, better: str) -> Verdict:
        verdict = judge(name, figure, target, better)
        self.verdicts.append(verdict)
        return verdict

    def rounds(self, name: str, values, target: float, better: str, unit: str = "") -> Verdict:
        """A target judged on per-round values: their median, min–max (IQR from ``IQR_FROM`` rounds) and n."""
        values = list(values)
        interval = "iqr" if len(values) >= IQR_FROM else "range"
        return self.figure(name, Figure.from_rounds(values, unit=unit, better=better, interval=interval), target,
                           better)

    def check(self, name: str, ok: bool, detail: str = "") -> Verdict:
        verdict = check(name, bool(ok), detail)
        self.verdicts.append(verdict)
        return verdict

    @property
    def failed(self) -> list[str]:
        return [v.name for v in self.verdicts if v.failed]

    def lines(self) -> list[str]:
        head = f"--check {self.script}:" + ("" if self.speed_target else " no speed target; correctness checks only")
        tail = (f"{len(self.verdicts) - len(self.failed)}/{len(self.verdicts)} passed"
                + (f"; FAILED: {', '.join(self.failed)}" if self.failed else ""))
        return [head, *(f"  {v.line}" for v in self.verdicts), tail]

    def finish(self, check: bool) -> int:
        """Print the gate (when ``check``) and return the exit status: 1 when ``check`` and a target failed."""
        if not check:
            return 0
        print("\n".join(self.lines()), flush=True)
        return 1 if self.failed else 0

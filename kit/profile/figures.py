"""A published figure with its spread: value, low–high over rounds, n, unit and which way is better.

Timings on a shared machine drift from one second to the next, so a bare number cannot say
whether a later run is really slower. A ``Figure`` carries what a reader (and ``kit compare``)
needs to judge that: the median over ``n`` interleaved rounds, the range the rounds spanned
(``low``–``high``, min–max of the per-round values), the unit, and whether ``"lower"`` or
``"higher"`` is better (``"?"`` for a chosen setting).

``Figure.from_rounds([...])`` builds one from per-round values; ``to_json()`` is what
``kit.publish`` writes (``{"value", "low", "high", "n", "unit", "better"}``) and
``Figure.from_json`` reads it back, as well as the older ``{"value": v, "spread": s}`` (read as
``v ± s``) and plain numbers (no spread known: ``n`` is 0).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kit.errors import ConfigError

BETTER = ("lower", "higher", "?")


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if hasattr(value, "item") and callable(value.item):  # a numpy scalar
            return _float(value.item())
        return None
    return float(value)


@dataclass(frozen=True)
class Figure:
    """One headline figure: ``value`` (median over rounds) within ``low``–``high`` over ``n`` rounds.

    ``n`` is 0 (and ``low == high == value``) when no spread is known; ``has_spread`` says which.
    """

    value: float
    low: float
    high: float
    n: int = 0
    unit: str = ""
    better: str = "?"

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ConfigError(f"better must be one of {BETTER}, got {self.better!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"n must be an int >= 0 (rounds), got {self.n!r}")
        for name in ("value", "low", "high"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if all(math.isfinite(x) for x in (self.value, self.low, self.high)) \
                and not self.low <= self.value <= self.high:
            raise ConfigError(f"a figure's value must lie within low–high, got {self.value} in "
                              f"[{self.low}, {self.high}]")

    @classmethod
    def from_rounds(cls, values: Iterable[float], unit: str = "", better: str = "?",
                    value: float | None = None, interval: str = "range") -> Figure:
        """The median of per-round ``values`` with their min–max; NaN/inf rounds are left out.

        ``value`` replaces the median where a notebook reports the figure pooled over all rounds'
        samples (the range is widened to hold it, should it lie just outside). ``interval="iqr"``
        takes the inter-quartile range instead of min–max: over many rounds (dozens) min–max is set
        by the one round that lost the CPU, and says little about the typical disagreement.
        """
        if interval not in ("range", "iqr"):
            raise ConfigError(f"interval must be 'range' or 'iqr', got {interval!r}")
        finite = sorted(v for v in (_float(x) for x in values) if v is not None and math.isfinite(v))
        if not finite:
            return cls.point(math.nan if value is None else value, unit, better)
        mid = statistics.median(finite) if value is None else float(value)
        low, high = finite[0], finite[-1]
        if interval == "iqr" and len(finite) >= 2:
            low, _, high = statistics.quantiles(finite, n=4, method="inclusive")
        return cls(mid, min(low, mid), max(high, mid), len(finite), unit, better)

    @classmethod
    def from_columns(cls, row: Mapping[str, Any], column: str, unit: str = "", better: str = "?",
                     n: str = "rounds") -> Figure:
        """A figure from one row of a summary or ``evaluate`` frame: ``column`` with its range columns.

        The range is read from ``<stem>_low_ms``/``<stem>_high_ms`` for ``<stem>_ms`` columns
        (``p50_ms`` -> ``p50_low_ms``) and ``<column>_low``/``<column>_high`` otherwise
        (``speedup``), n from the ``n`` column; widened to hold the value where a pooled value lies
        just outside its rounds' range. Without range columns (one round) it is a point.
        """
        stem = column[:-len("_ms")] if column.endswith("_ms") else None
        low_key, high_key = (f"{stem}_low_ms", f"{stem}_high_ms") if stem else (f"{column}_low", f"{column}_high")
        value = _float(row[column])
        if value is None:
            raise ConfigError(f"{column} is not a number: {row[column]!r}")
        low, high = _float(row.get(low_key)), _float(row.get(high_key))
        count = _float(row.get(n))
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high) and math.isfinite(value)):
            return cls.point(value, unit, better)
        rounds = int(count) if count is not None and math.isfinite(count) else 2
        return cls(value, min(low, value), max(high, value), rounds, unit, better)

    @classmethod
    def from_samples(cls, samples: Iterable[float], percentile: float, unit: str = "", better: str = "?",
                     confidence: float = 0.95, seed: int = 0) -> Figure:
        """A percentile of one run's samples (e.g. its p99 latency) with a bootstrap confidence interval.

        For a figure that one run measures once (a fault study's p99 over a few hundred requests),
        the interval says how far that percentile of so few samples could move by chance: the
        resampled percentiles' central ``confidence`` share (SciPy's percentile bootstrap, seeded).
        ``n`` is the number of samples here, not of rounds. Fewer than 2 finite samples give a point.
        """
        if not 0 <= percentile <= 100:
            raise ConfigError(f"percentile must be in [0, 100], got {percentile}")
        import numpy as np
        from scipy.stats import bootstrap

        data = np.asarray([v for v in (_float(x) for x in samples) if v is not None and math.isfinite(v)])
        if data.size == 0:
            return cls.point(math.nan, unit, better)
        value = float(np.percentile(data, percentile))
        if data.size < 2 or np.ptp(data) == 0:
            return cls.point(value, unit, better)
        ci = bootstrap((data,), lambda x, axis: np.percentile(x, percentile, axis=axis), vectorized=True,
                       n_resamples=999, confidence_level=confidence, method="percentile",
                       rng=np.random.default_rng(seed)).confidence_interval
        return cls(value, min(float(ci.low), value), max(float(ci.high), value), int(data.size), unit, better)

    @classmethod
    def point(cls, value: float, unit: str = "", better: str = "?") -> Figure:
        """A figure measured once: no spread known (``n`` 0)."""
        return cls(value, value, value, 0, unit, better)

    @classmethod
    def from_json(cls, raw: Any, better: str = "?") -> Figure | None:
        """A figure from what a results file holds: this class's JSON, ``{"value", "spread"}`` or a number.

        None when ``raw`` holds no number (a string, a list, ``None``); NaN/inf values are kept.
        """
        if isinstance(raw, Figure):
            return raw
        if isinstance(raw, Mapping):
            value = _float(raw.get("value"))
            if value is None:
                return None
            way = raw.get("better", better)
            way = way if way in BETTER else better
            unit = str(raw.get("unit", ""))
            low, high = _float(raw.get("low")), _float(raw.get("high"))
            if low is not None and high is not None and math.isfinite(value) and low <= value <= high:
                n = raw.get("n")
                n = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 2
                return cls(value, low, high, n, unit, way)
            spread = _float(raw.get("spread"))
            if spread is not None and math.isfinite(spread) and math.isfinite(value):
                return cls(value, value - abs(spread), value + abs(spread), 2, unit, way)
            return cls(value, value, value, 0, unit, way)
        value = _float(raw)
        return None if value is None else cls(value, value, value, 0, "", better)

    @property
    def has_spread(self) -> bool:
        """Whether the figure was measured over rounds (``n`` >= 2), so its range says how noisy it is."""
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "unit": self.unit,
                "better": self.better}

    def rounded(self, digits: int = 4) -> Figure:
        """The same figure with value, low and high rounded to ``digits`` significant digits."""
        def r(x: float) -> float:
            return float(f"{x:.{digits}g}") if math.isfinite(x) else x
        return Figure(r(self.value), min(r(self.low), r(self.value)), max(r(self.high), r(self.value)),
                      self.n, self.unit, self.better)

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if not self.has_spread:
            return f"{self.value:.4g}{unit}"
        return f"{self.value:.4g}{unit} [{self.low:.4g}–{self.high:.4g}, n={self.n}]"


def ratio_rounds(numerator: Iterable[float], denominator: Iterable[float]) -> list[float]:
    """Per-round ratios of two series measured interleaved in the same rounds (a speed-up per round).

    A side that is not a sequence (NaN where a frame has no rounds) gives no ratios.
    """
    if not isinstance(numerator, Iterable) or not isinstance(denominator, Iterable):
        return []
    out = []
    for a, b in zip(numerator, denominator):
        a, b = _float(a), _float(b)
        if a is not None and b is not None and b != 0 and math.isfinite(a) and math.isfinite(b):
            out.append(a / b)
    return out

"""What the tuner may change and what it aims for: a declared search space and an objective.

The space is a handful of discrete choices (model variant, execution provider, threads, graph
optimization level, batch size, batcher timeout), declared up front so grid search and TPE search
the very same points and a study stored in a database can be resumed or shared between machines.
The objective is one figure to optimize (p95 latency or throughput) under constraints (accuracy
drop within a budget, p99 within a target); a configuration that breaks a constraint is
*infeasible* and is never chosen, however fast it is.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from kit.config import require_int
from kit.errors import ConfigError

GRAPH_LEVELS = ("disable", "basic", "extended", "layout", "all")
METRICS = {"p95_ms": "minimize", "samples_per_s": "maximize"}
_ALIASES = {"p95_latency": "p95_ms", "latency": "p95_ms", "throughput": "samples_per_s"}


@dataclass(frozen=True)
class TrialConfig:
    """One point of the space: everything needed to build and drive one served configuration."""

    variant: str
    provider: str = "CPUExecutionProvider"
    threads: int = 1
    graph_level: str = "all"
    batch_size: int = 1
    batch_timeout_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.graph_level not in GRAPH_LEVELS:
            raise ConfigError(f"graph_level must be one of {GRAPH_LEVELS}, got {self.graph_level!r}")
        require_int("threads", self.threads, 0, hint=" (0: the runtime chooses)")
        require_int("batch_size", self.batch_size)
        if not (self.batch_timeout_ms >= 0 and math.isfinite(self.batch_timeout_ms)):
            raise ConfigError(f"batch_timeout_ms must be a finite number >= 0, got {self.batch_timeout_ms!r}")

    def ort_options(self) -> dict[str, Any]:
        """Keyword arguments for ``OrtOptions`` / ``create_engine`` on ONNX Runtime."""
        return {"providers": (self.provider,), "graph_optimization_level": self.graph_level,
                "intra_op_num_threads": self.threads}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown TrialConfig fields {unknown}; expected {sorted(names)}")
        return cls(**data)


def _tuple(name: str, values: Any, kind: type | tuple[type, ...]) -> tuple:
    if isinstance(values, (str, int, float)):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ConfigError(f"{name} needs at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} has repeated values: {values}")
    bad = [v for v in values if not isinstance(v, kind) or isinstance(v, bool)]
    if bad:
        raise ConfigError(f"{name} values must be {kind}, got {bad}")
    return values


@dataclass(frozen=True)
class SearchSpace:
    """The discrete choices to search; one value fixes a dimension. ``size`` is the grid's budget."""

    variants: Sequence[str] = ("fp32", "int8")
    providers: Sequence[str] = ("CPUExecutionProvider",)
    threads: Sequence[int] = (1, 2)
    graph_levels: Sequence[str] = ("disable", "basic", "all")
    batch_sizes: Sequence[int] = (1, 4, 16, 32)
    batch_timeouts_ms: Sequence[float] = (0.0, 2.0, 5.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", _tuple("variants", self.variants, str))
        object.__setattr__(self, "providers", _tuple("providers", self.providers, str))
        object.__setattr__(self, "threads", _tuple("threads", self.threads, int))
        object.__setattr__(self, "graph_levels", _tuple("graph_levels", self.graph_levels, str))
        object.__setattr__(self, "batch_sizes", _tuple("batch_sizes", self.batch_sizes, int))
        object.__setattr__(self, "batch_timeouts_ms",
                           tuple(float(v) for v in _tuple("batch_timeouts_ms", self.batch_timeouts_ms,
                                                          (int, float))))
        first = self.variants[0]
        for level in self.graph_levels:  # TrialConfig owns the checks of every single value
            TrialConfig(first, graph_level=level)
        for threads in self.threads:
            TrialConfig(first, threads=threads)
        for batch in self.batch_sizes:
            TrialConfig(first, batch_size=batch)
        for timeout in self.batch_timeouts_ms:
            TrialConfig(first, batch_timeout_ms=timeout)

    def grid(self) -> dict[str, list]:
        """The space as Optuna's ``GridSampler`` takes it (parameter name -> values)."""
        return {"variant": list(self.variants), "provider": list(self.providers), "threads": list(self.threads),
                "graph_level": list(self.graph_levels), "batch_size": list(self.batch_sizes),
                "batch_timeout_ms": list(self.batch_timeouts_ms)}

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def configs(self):  # -> Iterator[TrialConfig]
        grid = self.grid()
        for values in itertools.product(*grid.values()):
            yield TrialConfig(**dict(zip(grid, values)))

    def suggest(self, trial: Any) -> TrialConfig:
        """Ask an Optuna trial for one point (categorical in every dimension)."""
        return TrialConfig(**{name: trial.suggest_categorical(name, values) for name, values in self.grid().items()})


@dataclass(frozen=True)
class Objective:
    """What to optimize and what must hold.

    ``metric``: ``"p95_latency"`` (minimized, ms) or ``"throughput"`` (samples/s, maximized).
    ``accuracy_budget``: largest accepted accuracy drop against the reference variant (absolute,
    e.g. 0.01 for one point of accuracy); ``p99_target_ms``: largest accepted p99 latency.
    ``None`` leaves a constraint out.
    """

    metric: str = "p95_latency"
    accuracy_budget: float | None = 0.01
    p99_target_ms: float | None = None

    def __post_init__(self) -> None:
        key = _ALIASES.get(self.metric, self.metric)
        if key not in METRICS:
            raise ConfigError(f"metric must be one of {sorted({*_ALIASES, *METRICS})}, got {self.metric!r}")
        object.__setattr__(self, "metric", key)
        for name in ("accuracy_budget", "p99_target_ms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value >= 0 or not math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0 or None, got {value!r}")

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    def value(self, measured: Mapping[str, float]) -> float:
        """The objective figure from one measurement; a missing or non-finite one is an error."""
        if self.metric not in measured:
            raise ConfigError(f"the evaluation returned {sorted(measured)}; the objective needs {self.metric!r}")
        return float(measured[self.metric])

    def constraints(self, measured: Mapping[str, float]) -> dict[str, float]:
        """Optuna's convention: one value per constraint, feasible when every value is <= 0.

        A measurement that cannot show a constraint holds (NaN, or missing) counts as a violation.
        """
        out = {}
        if self.accuracy_budget is not None:
            drop = float(measured.get("accuracy_drop", math.nan))
            out["accuracy_drop"] = drop - self.accuracy_budget if math.isfinite(drop) else math.inf
        if self.p99_target_ms is not None:
            p99 = float(measured.get("p99_ms", math.nan))
            out["p99_ms"] = p99 - self.p99_target_ms if math.isfinite(p99) else math.inf
        return out

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

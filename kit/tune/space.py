"""What the tuner may change and what it aims for: a declared search space and an objective.

The space is a handful of discrete choices (model variant, execution provider, intra-op threads,
graph optimization level, batch size, batcher timeout), declared up front so grid search and TPE
search the very same points and a study stored in a database can be resumed or shared between
machines. The objective is one figure to optimize (p95 latency or throughput) under constraints
(accuracy drop within a budget, p99 within a target); a configuration that breaks a constraint is
*infeasible* and is never chosen, however fast it is.

Names and units are the ecosystem's own, the same as everywhere in the kit: ``intra_op_num_threads``
and ``graph_optimization_level`` (ONNX Runtime's ``SessionOptions``), ``batch_size`` and
``batch_timeout_micros`` (TF Serving's batching parameters, int microseconds), and
``accuracy_budget`` / ``accuracy_drop_pts`` in percentage points (``1.0`` is one point of
accuracy), as in ``kit.optimize.recommend``.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.config import require_int
from kit.engines.onnxruntime import GRAPH_OPTIMIZATION_LEVELS
from kit.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

#: What an objective may optimize -> (the results column it reads, the direction).
OBJECTIVES = {"p95_latency": ("p95_ms", "minimize"), "throughput": ("samples_per_s", "maximize")}


@dataclass(frozen=True)
class TrialConfig:
    """One point of the space: everything needed to build and drive one served configuration."""

    variant: str
    provider: str = "CPUExecutionProvider"
    intra_op_num_threads: int = 1
    graph_optimization_level: str = "all"
    batch_size: int = 1
    batch_timeout_micros: int = 0

    def __post_init__(self) -> None:
        if self.graph_optimization_level not in GRAPH_OPTIMIZATION_LEVELS:
            raise ConfigError(f"graph_optimization_level must be one of {GRAPH_OPTIMIZATION_LEVELS}, "
                              f"got {self.graph_optimization_level!r}")
        require_int("intra_op_num_threads", self.intra_op_num_threads, 0, hint=" (0: the runtime chooses)")
        require_int("batch_size", self.batch_size)
        require_int("batch_timeout_micros", self.batch_timeout_micros, 0)

    def ort_options(self) -> dict[str, Any]:
        """Keyword arguments for ``OrtOptions`` / ``create_engine`` on ONNX Runtime."""
        return {"providers": (self.provider,), "graph_optimization_level": self.graph_optimization_level,
                "intra_op_num_threads": self.intra_op_num_threads}

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
    """The discrete choices to search; one value fixes a dimension. ``size`` is the grid's budget.

    Each field is the plural of a ``TrialConfig`` field (``intra_op_num_threads`` is already plural),
    and ``grid()`` names the dimensions by the ``TrialConfig`` fields, so a study's parameters, the
    results columns and the exported configuration all carry the same names.
    """

    variants: Sequence[str] = ("fp32", "int8")
    providers: Sequence[str] = ("CPUExecutionProvider",)
    intra_op_num_threads: Sequence[int] = (1, 2)
    graph_optimization_levels: Sequence[str] = ("disable", "basic", "all")
    batch_sizes: Sequence[int] = (1, 4, 16, 32)
    batch_timeouts_micros: Sequence[int] = (0, 2000, 5000)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", _tuple("variants", self.variants, str))
        object.__setattr__(self, "providers", _tuple("providers", self.providers, str))
        object.__setattr__(self, "intra_op_num_threads",
                           _tuple("intra_op_num_threads", self.intra_op_num_threads, int))
        object.__setattr__(self, "graph_optimization_levels",
                           _tuple("graph_optimization_levels", self.graph_optimization_levels, str))
        object.__setattr__(self, "batch_sizes", _tuple("batch_sizes", self.batch_sizes, int))
        object.__setattr__(self, "batch_timeouts_micros",
                           _tuple("batch_timeouts_micros", self.batch_timeouts_micros, int))
        first = self.variants[0]
        for level in self.graph_optimization_levels:  # TrialConfig owns the checks of every single value
            TrialConfig(first, graph_optimization_level=level)
        for threads in self.intra_op_num_threads:
            TrialConfig(first, intra_op_num_threads=threads)
        for batch in self.batch_sizes:
            TrialConfig(first, batch_size=batch)
        for timeout in self.batch_timeouts_micros:
            TrialConfig(first, batch_timeout_micros=timeout)

    def grid(self) -> dict[str, list]:
        """The space as Optuna's ``GridSampler`` takes it (``TrialConfig`` field name -> values)."""
        return {"variant": list(self.variants), "provider": list(self.providers),
                "intra_op_num_threads": list(self.intra_op_num_threads),
                "graph_optimization_level": list(self.graph_optimization_levels),
                "batch_size": list(self.batch_sizes), "batch_timeout_micros": list(self.batch_timeouts_micros)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """A space from its fields (``{"batch_sizes": [1, 8], ...}``); the ones left out keep their defaults."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping):
            raise ConfigError(f"a search space is a JSON object with some of {names}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"unknown search space fields {unknown}; expected some of {names}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, path: str) -> SearchSpace:
        """``"default"``: ``SearchSpace()``; otherwise a JSON file of ``from_dict``'s fields."""
        if path == "default":
            return cls()
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read the search space {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the search space {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_grid(cls, grid: Mapping[str, Sequence]) -> SearchSpace:
        """The inverse of ``grid()`` (``TrialConfig`` field names -> values), e.g. from a stored study."""
        plural = {"variant": "variants", "provider": "providers", "intra_op_num_threads": "intra_op_num_threads",
                  "graph_optimization_level": "graph_optimization_levels", "batch_size": "batch_sizes",
                  "batch_timeout_micros": "batch_timeouts_micros"}
        unknown = sorted(set(grid) - set(plural))
        if unknown:
            raise ConfigError(f"unknown grid dimensions {unknown}; expected {sorted(plural)}")
        return cls(**{plural[k]: tuple(v) for k, v in grid.items()})

    def to_dict(self) -> dict[str, list]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def configs(self) -> Iterator[TrialConfig]:
        grid = self.grid()
        for values in itertools.product(*grid.values()):
            yield TrialConfig(**dict(zip(grid, values)))

    def suggest(self, trial: Any) -> TrialConfig:
        """Ask an Optuna trial for one point (categorical in every dimension)."""
        return TrialConfig(**{name: trial.suggest_categorical(name, values) for name, values in self.grid().items()})


@dataclass(frozen=True)
class Objective:
    """What to optimize and what must hold: ``Objective("throughput", accuracy_budget=1.0, p99_target_ms=6.0)``.

    ``optimize``: ``"p95_latency"`` (the ``p95_ms`` column, minimized) or ``"throughput"`` (the
    ``samples_per_s`` column, maximized); the same values as notebook 08's ``objective`` parameter.
    ``accuracy_budget``: largest accepted accuracy drop against the reference variant, in
    percentage points (``1.0``: one point, e.g. 98.0 % -> 97.0 %), compared with the measured
    ``accuracy_drop_pts``; ``p99_target_ms``: largest accepted p99 latency. ``None`` leaves a
    constraint out.
    """

    optimize: str = "p95_latency"
    accuracy_budget: float | None = 1.0
    p99_target_ms: float | None = None

    def __post_init__(self) -> None:
        if self.optimize not in OBJECTIVES:
            raise ConfigError(f"optimize must be one of {sorted(OBJECTIVES)}, got {self.optimize!r}")
        for name in ("accuracy_budget", "p99_target_ms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value >= 0 or not math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0 or None, got {value!r}")

    @property
    def column(self) -> str:
        """The measured figure (results column) this objective optimizes: ``p95_ms`` or ``samples_per_s``."""
        return OBJECTIVES[self.optimize][0]

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.optimize][1]

    def value(self, measured: Mapping[str, float]) -> float:
        """The objective figure from one measurement; a missing one is an error."""
        if self.column not in measured:
            raise ConfigError(f"the evaluation returned {sorted(measured)}; the objective {self.optimize!r} "
                              f"needs {self.column!r}")
        return float(measured[self.column])

    def constraints(self, measured: Mapping[str, float]) -> dict[str, float]:
        """Optuna's convention: one value per constraint, feasible when every value is <= 0.

        A measurement that cannot show a constraint holds (NaN, or missing) counts as a violation.
        """
        out = {}
        if self.accuracy_budget is not None:
            drop = float(measured.get("accuracy_drop_pts", math.nan))
            out["accuracy_drop_pts"] = drop - self.accuracy_budget if math.isfinite(drop) else math.inf
        if self.p99_target_ms is not None:
            p99 = float(measured.get("p99_ms", math.nan))
            out["p99_ms"] = p99 - self.p99_target_ms if math.isfinite(p99) else math.inf
        return out

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

    def best_row(self, frame: pd.DataFrame) -> pd.Series | None:
        """The best completed, feasible row of a results frame (``Tuner.to_frame()``) under *this* objective.

        Re-chooses from trials already measured, e.g. under another budget or p99 target, with the
        same rules as the tuner: a row that cannot show a constraint holds is infeasible. None when
        no row is feasible.
        """
        done = frame[(frame["state"] == "complete") & frame[self.column].notna()]
        ok = [index for index, row in done.iterrows() if all(v <= 0 for v in self.constraints(row).values())]
        if not ok:
            return None
        chosen = done.loc[ok, self.column]
        return done.loc[chosen.idxmin() if self.direction == "minimize" else chosen.idxmax()]

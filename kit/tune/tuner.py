"""Search a declared space with Optuna (TPE or grid), keep every trial, choose only feasible ones.

Studies live in a database: SQLite under the output folder by default, or any URL Optuna accepts
(``postgresql://...``), so a study can be resumed after a crash and several machines can work on
one. A trial whose evaluation raises a ``KitError`` (a provider that does not load, a model that
fails) is recorded as failed with its message (the ``error`` column of ``to_frame()``) and the
search goes on; a ``ConfigError`` or a programming error (``TypeError``, ``AttributeError``, ...)
stops it, because no later trial would fare better. Optuna's own ``TrialPruned`` is Optuna's to
handle. Constraints are enforced twice: TPE is
told about them (``Trial.set_constraint``; ``constraints_func`` on Optuna 4) so it learns to avoid
infeasible regions, and ``best`` filters them, so grid search (which knows nothing of constraints)
never picks an infeasible point either.

The latency-throughput Pareto front is ``kit.optimize.pareto_front``, the kit's one implementation.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts import atomic_output
from kit.errors import ConfigError, KitError, MissingDependencyError
from kit.optimize.evaluate import pareto_front
from kit.tune.fleet import (
    StorageLock,
    StudyMismatch,
    fail_stale_trials,
    fingerprint,
    hardware_difference,
    hardware_record,
    rdb_storage,
    safe_url,
)
from kit.tune.space import Objective, SearchSpace, TrialConfig

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

Evaluate = Callable[[TrialConfig], Mapping[str, float]]
SAMPLERS = ("tpe", "grid")
FAIRNESS = ("none", "lock")
WHERE_COLUMNS = ("host", "worker", "fingerprint", "retry_of")
METRIC_COLUMNS = ("p50_ms", "p95_ms", "p99_ms", "samples_per_s", "accuracy", "accuracy_drop_pts")


@functools.cache
def _has_set_constraint() -> bool:
    """Optuna 5 records constraints per trial; Optuna 4 only through a sampler's ``constraints_func``."""
    from optuna.trial import Trial

    return hasattr(Trial, "set_constraint")


def _feasible(constraints: Mapping[str, float]) -> bool:
    return all(value <= 0 for value in constraints.values())


class _TrialFailed(Exception):
    """Raised inside the Optuna objective so that Optuna records the trial as failed and goes on."""


def _import_optuna():
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("optuna", "The auto-tuner") from exc
    return optuna


@contextlib.contextmanager
def _optuna_quiet(optuna) -> Iterator[None]:
    """Optuna logs each trial at INFO and each failure with a traceback; the kit logs its own line."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass(frozen=True)
class BestTrial:
    """The chosen configuration with the figures it was chosen on.

    ``value`` is the objective's figure (``objective.column`` of ``metrics``).
    """

    number: int
    config: TrialConfig
    value: float
    objective: Objective
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.number,
                "objective": {"optimize": self.objective.optimize, "column": self.objective.column,
                              "value": self.value},
                "config": self.config.to_dict(), "metrics": self.metrics}


class Tuner:
    """Optuna study over a ``SearchSpace`` towards an ``Objective``; ``evaluate`` measures one point.

    ``evaluate(config)`` returns measured figures: at least the objective's column (``p95_ms`` or
    ``samples_per_s``), plus ``p99_ms`` and ``accuracy_drop_pts`` (percentage points) when the
    objective constrains them.
    """

    def __init__(self, space: SearchSpace, objective: Objective, evaluate: Evaluate,
                 out_dir: str | os.PathLike[str] = "tune", storage: Any = None,
                 study_name: str = "kit-tune", study_per_hardware: bool = False,
                 heartbeat_interval_s: float | None = 5.0, grace_period_s: float | None = None,
                 max_retry: int = 2, fair: str = "none", identity: Mapping[str, Any] | None = None) -> None:
        if not isinstance(space, SearchSpace) or not isinstance(objective, Objective):
            raise ConfigError("Tuner takes a SearchSpace and an Objective")
        if not callable(evaluate):
            raise ConfigError(f"evaluate must be callable config -> dict of figures, got {type(evaluate).__name__}")
        if not study_name:
            raise ConfigError("study_name must be a non-empty string")
        self.space, self.objective, self.evaluate = space, objective, evaluate
        self.out_dir = Path(out_dir)
        self.study_name = study_name
        if storage is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{(self.out_dir / 'study.db').resolve()}"
        self.storage = storage
        self.study_per_hardware = study_per_hardware
        self.identity = dict(identity or {})  # e.g. {"model": digest}: what else every worker must agree on
        self.heartbeat_interval_s, self.grace_period_s, self.max_retry = heartbeat_interval_s, grace_period_s, max_retry
        if fair not in FAIRNESS:
            raise ConfigError(f"fair must be one of {FAIRNESS}, got {fair!r}")
        self.fair = fair  # "lock": measure under this host's lock in the storage; "none": pinned or alone
        self.hardware = hardware_record()
        self.fingerprint = fingerprint(self.hardware)
        self.worker_label = f"{self.hardware['host']}:{os.getpid()}"
        self._lock: StorageLock | None = None
        self._study: Any = None

    @property
    def study_key(self) -> str:
        """The study this tuner works on: ``study_name``, or ``study_name@fingerprint`` per hardware."""
        return f"{self.study_name}@{self.fingerprint}" if self.study_per_hardware else self.study_name

    def _open_storage(self) -> Any:
        if isinstance(self.storage, str):  # a URL: Optuna's RDBStorage, heartbeat on
            return rdb_storage(self.storage, self.heartbeat_interval_s, self.grace_period_s, self.max_retry)
        return self.storage

    @classmethod
    def attach(cls, storage: Any, study_name: str, out_dir: str | os.PathLike[str] = "tune") -> Tuner:
        """A read-only view of an existing study (its results, plots, best), from any machine.

        The space and objective are the ones the study was made with; nothing is measured here, so
        the viewer's hardware does not matter (``run`` is refused). Trials keep their host and worker.
        """
        optuna = _import_optuna()
        from sqlalchemy.exc import SQLAlchemyError

        url = storage if isinstance(storage, str) else None
        try:
            opened = rdb_storage(url, heartbeat_interval_s=None) if url else storage
            with _optuna_quiet(optuna):
                study = optuna.load_study(study_name=study_name, storage=opened)
        except ConfigError:
            raise
        except KeyError as exc:
            names = optuna.get_all_study_names(opened)
            raise ConfigError(f"no study {study_name!r} in {safe_url(url) if url else 'the storage'}; it holds "
                              f"{names}") from exc
        except (SQLAlchemyError, optuna.exceptions.OptunaError, ValueError) as exc:
            raise ConfigError(f"cannot open the study {study_name!r}: {type(exc).__name__}: {exc}") from exc
        attrs = study.user_attrs
        if "kit_space" not in attrs:
            raise ConfigError(f"study {study_name!r} was not made by kit's tuner (no search space recorded)")
        space = SearchSpace.from_grid(attrs["kit_space"])
        objective = Objective(**attrs["kit_objective"])

        def read_only(config: TrialConfig) -> Mapping[str, float]:
            raise ConfigError(f"study {study_name!r} is attached read-only: run `kit tune` to add trials")

        tuner = cls(space, objective, read_only, out_dir=out_dir, storage=storage, study_name=study_name,
                    heartbeat_interval_s=None,
                    identity=attrs.get("kit_identity"))
        tuner.fingerprint = attrs.get("kit_fingerprint", tuner.fingerprint)
        tuner._study = study
        tuner.attached = True
        return tuner

    # -- the study -------------------------------------------------------------------------------
    def _constraints(self, trial: Any) -> list[float]:
        """``constraints_func`` for Optuna 4, which has no ``Trial.set_constraint``."""
        return list(trial.user_attrs.get("constraints", {"missing": math.inf}).values())

    @property
    def _n_constraints(self) -> int:
        return (self.objective.accuracy_budget is not None) + (self.objective.p99_target_ms is not None)

    def _sampler(self, sampler: str, seed: int):
        optuna = _import_optuna()
        if sampler == "grid":
            return optuna.samplers.GridSampler(self.space.grid(), seed=seed)
        if sampler == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=min(10, max(2, self.space.size // 10)),
                constraints_func=self._constraints if self._n_constraints and not _has_set_constraint() else None)
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")

    def load(self, sampler: str = "tpe", seed: int = 0):
        """Create the study, or load it when it exists already (resume; several workers)."""
        optuna = _import_optuna()
        from sqlalchemy.exc import SQLAlchemyError  # Optuna's RDB storage is built on SQLAlchemy

        study_sampler = self._sampler(sampler, seed)
        try:
            storage = self._open_storage()
            with _optuna_quiet(optuna):
                study = optuna.create_study(storage=storage, study_name=self.study_key,
                                            direction=self.objective.direction, sampler=study_sampler,
                                            load_if_exists=True)
        except ConfigError:
            raise
        except (SQLAlchemyError, optuna.exceptions.OptunaError, ImportError, ValueError) as exc:
            # a URL SQLAlchemy cannot parse, an unknown dialect or a missing driver (ImportError), an
            # unreachable or unwritable database; anything else is a bug and propagates
            raise ConfigError(f"cannot open the study {self.study_key!r} in {self.storage_label()}: "
                              f"{type(exc).__name__}: {exc}") from exc
        if study.direction.name.lower() != self.objective.direction:  # load_if_exists keeps the stored one
            raise ConfigError(f"study {self.study_name!r} in {self.storage_label()} was made to "
                              f"{study.direction.name.lower()}; the objective {self.objective.optimize!r} needs "
                              f"{self.objective.direction}: use another study_name")
        lock = self._storage_lock("bind")
        try:
            with lock.hold():  # the first worker binds; the others compare
                self._bind(study)
        finally:
            lock.close()
        self._study = study
        return self._study

    def _storage_lock(self, purpose: str) -> StorageLock:
        name = f"kit-tune:{self.study_key}:{purpose}"
        if purpose == "measure":  # one measurement at a time per machine; other machines do not disturb it
            name += f":{self.hardware['host']}"
        url = self.storage if isinstance(self.storage, str) else None
        if purpose == "measure":
            if self._lock is None:
                self._lock = StorageLock(url, name)
            return self._lock
        return StorageLock(url, name)

    def _binding(self) -> dict[str, Any]:
        return {"space": self.space.grid(),
                "objective": {"optimize": self.objective.optimize, "accuracy_budget": self.objective.accuracy_budget,
                              "p99_target_ms": self.objective.p99_target_ms},
                "identity": self.identity}

    def _bind(self, study: Any) -> None:
        """Bind a new study to this space, objective and hardware; refuse a worker that differs."""
        attrs = study.user_attrs
        mine = self._binding()
        where = f"study {self.study_key!r} in {self.storage_label()}"
        if "kit_space" not in attrs:
            study.set_user_attr("kit_space", mine["space"])
            study.set_user_attr("kit_objective", mine["objective"])
            study.set_user_attr("kit_identity", mine["identity"])
            study.set_user_attr("kit_fingerprint", self.fingerprint)
            study.set_user_attr("kit_hardware", {k: v for k, v in self.hardware.items() if k != "all_libraries"})
            return
        if attrs["kit_space"] != mine["space"]:
            diff = [f"{k}: study {attrs['kit_space'].get(k)} != {v}" for k, v in mine["space"].items()
                    if attrs["kit_space"].get(k) != v]
            raise StudyMismatch(f"{where} was made with another search space ({'; '.join(diff)}); use the study's "
                                f"space or a new study name")
        if attrs.get("kit_objective") != mine["objective"]:
            raise StudyMismatch(f"{where} was made for the objective {attrs.get('kit_objective')}, not "
                                f"{mine['objective']}; use the study's objective or a new study name")
        if attrs.get("kit_identity", {}) != mine["identity"]:
            raise StudyMismatch(f"{where} was made for {attrs.get('kit_identity')}, this worker tunes "
                                f"{mine['identity']}: every worker of a study must tune the same model")
        if attrs.get("kit_fingerprint") != self.fingerprint:
            diff = hardware_difference(attrs.get("kit_hardware", {}), self.hardware)
            raise StudyMismatch(f"{where} is bound to other hardware (fingerprint {attrs.get('kit_fingerprint')}, "
                                f"first measured on {attrs.get('kit_hardware', {}).get('host')!r}); this worker on "
                                f"{self.hardware['host']!r} is {self.fingerprint}: {'; '.join(diff)}. Timings from "
                                f"different hardware must not be ranked together: run this worker with "
                                f"--study-per-hardware (Tuner(study_per_hardware=True)) to join the study "
                                f"{self.study_name}@{self.fingerprint}, or use another study name")

    @property
    def study(self):
        return self._study if self._study is not None else self.load()

    def storage_label(self) -> str:
        """The storage URL without credentials, for messages and exported files."""
        return safe_url(str(self.storage)) if isinstance(self.storage, str) else type(self.storage).__name__

    def _objective(self, trial: Any) -> float:
        try:
            config = self.space.suggest(trial)
        except ValueError as exc:  # Optuna refuses categorical choices that differ from the study's
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"study {self.study_key!r} in {self.storage_label()} was made with another "
                              f"search space ({exc}); use a new study_name for this space") from exc
        trial.set_user_attr("host", self.hardware["host"])
        trial.set_user_attr("worker", self.worker_label)
        trial.set_user_attr("fingerprint", self.fingerprint)
        trial.set_user_attr("hardware", self.hardware)
        try:
            if self.fair == "lock":
                with self._storage_lock("measure").hold() as waited:
                    measured = {k: float(v) for k, v in dict(self.evaluate(config)).items()}
                trial.set_user_attr("lock_wait_s", round(waited, 4))
            else:
                measured = {k: float(v) for k, v in dict(self.evaluate(config)).items()}
        except ConfigError:
            raise
        except KitError as exc:
            message = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", message)
            log.warning("trial %d failed (%s): %s", trial.number, config, message)
            raise _TrialFailed(message) from exc
        value = self.objective.value(measured)
        trial.set_user_attr("metrics", measured)
        constraints = self.objective.constraints(measured)
        trial.set_user_attr("constraints", constraints)
        if _has_set_constraint():
            for key, excess in constraints.items():
                trial.set_constraint(key, excess)
        if not math.isfinite(value):
            trial.set_user_attr("error", f"non-finite {self.objective.column}: {value}")
            raise _TrialFailed(f"non-finite objective {value}")
        return value

    def run(self, n_trials: int | None = None, sampler: str = "tpe", seed: int = 0,
            timeout_s: float | None = None, progress: bool = False) -> pd.DataFrame:
        """Run ``n_trials`` more trials (grid: until the grid is covered when None); return ``to_frame()``."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if n_trials is not None and n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
        if n_trials is None and sampler == "tpe" and timeout_s is None:
            raise ConfigError("TPE needs n_trials or timeout_s; only a grid search ends by itself")
        if getattr(self, "attached", False):
            raise ConfigError(f"study {self.study_name!r} is attached read-only (Tuner.attach); build a Tuner with "
                              f"an evaluator, or run `kit tune`, to add trials")
        optuna = _import_optuna()
        study = self.load(sampler, seed)
        if isinstance(self.storage, str) and self.heartbeat_interval_s is not None:
            failed = fail_stale_trials(study)  # Optuna's own heartbeat check, so the count below sees the retries
            if failed:
                log.warning("trials %s of study %r stopped sending heartbeats (their worker died): marked failed and "
                            "enqueued again", failed, self.study_key)
        if sampler == "grid" and n_trials is None:
            n_trials = self.pending()
            if n_trials == 0:
                return self.to_frame()
        with _optuna_quiet(optuna):
            study.optimize(self._objective, n_trials=n_trials, timeout=timeout_s, catch=(_TrialFailed,),
                           show_progress_bar=progress)
        return self.to_frame()

    def pending(self) -> int:
        """Trials a grid search still needs: grid points no trial finished, plus retries waiting to run."""
        trials = self.study.get_trials(deepcopy=False)
        done = {tuple(t.params.get(k) for k in self.space.grid()) for t in trials if t.state.is_finished()}
        waiting = sum(t.state.name == "WAITING" for t in trials)
        return max(0, self.space.size - len(done & set(map(self._key, self.space.configs())))) + waiting

    def _key(self, config: TrialConfig) -> tuple:
        data = config.to_dict()
        return tuple(data[k] for k in self.space.grid())

    # -- reading results -------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per trial: state, config, measured figures, objective value, feasibility, error.

        A failed trial is a row too: state ``fail`` and its message in ``error``.
        """
        import pandas as pd

        rows = []
        trials = self._trials()
        retried_as = {t.system_attrs["failed_trial"]: t.number for t in trials if "failed_trial" in t.system_attrs}
        for t in trials:
            metrics = t.user_attrs.get("metrics", {})
            constraints = t.user_attrs.get("constraints")
            complete = t.state.name == "COMPLETE"
            error = t.user_attrs.get("error", "")
            if t.state.name == "FAIL" and not error:  # failed by Optuna's heartbeat check
                error = ("no heartbeat within the grace period (its worker died or hung); "
                         + (f"retried as trial {retried_as[t.number]}" if t.number in retried_as else "not retried"))
            rows.append({"trial": t.number, "state": t.state.name.lower(), **t.params,
                         **{k: metrics.get(k, math.nan) for k in METRIC_COLUMNS},
                         "value": t.value if complete else math.nan,
                         "feasible": bool(complete and constraints is not None and _feasible(constraints)),
                         "error": error,
                         "seconds": t.duration.total_seconds() if t.duration else math.nan,
                         "host": t.user_attrs.get("host", ""), "worker": t.user_attrs.get("worker", ""),
                         "fingerprint": t.user_attrs.get("fingerprint", ""),
                         "retry_of": t.system_attrs.get("failed_trial", math.nan)})
        columns = ["trial", "state", *self.space.grid(), *METRIC_COLUMNS, "value", "feasible", "error", "seconds",
                   *WHERE_COLUMNS]
        return pd.DataFrame(rows, columns=columns)

    def _trials(self) -> list:
        """The study's trials measured on its hardware (a study is bound to one; this never mixes them)."""
        bound = self.study.user_attrs.get("kit_fingerprint", self.fingerprint)
        return [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("fingerprint", bound) == bound]

    def best(self) -> BestTrial:
        """The best feasible completed trial; a ``KitError`` when no trial is feasible."""
        best = None
        for t in self._trials():
            constraints = t.user_attrs.get("constraints")
            if t.state.name != "COMPLETE" or constraints is None or not _feasible(constraints):
                continue
            if best is None or self.objective.better(t.value, best.value):
                best = t
        if best is None:
            raise KitError(f"no feasible trial in study {self.study_name!r}: every completed trial breaks a "
                           f"constraint ({self.objective}) or failed; relax the budget or widen the space")
        config = TrialConfig(**{k: best.params[k] for k in self.space.grid()})
        return BestTrial(number=best.number, config=config, value=float(best.value), objective=self.objective,
                         metrics=dict(best.user_attrs.get("metrics", {})))

    def trials_to_best(self) -> int:
        """How many trials (failed ones included) the study ran until it first reached its best value."""
        best = self.best()
        frame = self.to_frame().sort_values("trial").reset_index(drop=True)
        hits = frame.index[frame["feasible"] & (frame["value"] == best.value)]
        return int(hits[0]) + 1

    # -- plots and exports -----------------------------------------------------------------------
    def plot_pareto(self, ax: Axes | None = None) -> Axes:
        """p95 latency against throughput of every completed trial; the feasible Pareto front drawn.

        The front is ``kit.optimize.pareto_front`` (lower ``p95_ms``, higher ``samples_per_s``) over
        the feasible trials, one row per configuration (TPE may measure a point twice).
        """
        import matplotlib.pyplot as plt

        frame = self.to_frame()
        frame = frame[frame["state"] == "complete"]
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        infeasible, feasible = frame[~frame["feasible"]], frame[frame["feasible"]]
        ax.scatter(infeasible["p95_ms"], infeasible["samples_per_s"], marker="x", color="tab:red",
                   label=f"infeasible ({len(infeasible)})")
        ax.scatter(feasible["p95_ms"], feasible["samples_per_s"], color="tab:blue", alpha=0.6,
                   label=f"feasible ({len(feasible)})")
        distinct = feasible.drop_duplicates(subset=list(self.space.grid()))
        front = distinct[pareto_front(distinct, x="p95_ms", y="samples_per_s")].sort_values("p95_ms")
        if len(front):
            ax.step(front["p95_ms"], front["samples_per_s"], where="post", color="tab:green",
                    label=f"Pareto front ({len(front)})")
            best = self.best()
            ax.scatter([best.metrics.get("p95_ms")], [best.metrics.get("samples_per_s")], s=160,
                       facecolors="none", edgecolors="black", linewidths=2, label=f"best (trial {best.number})")
        ax.set_xlabel("p95 latency (ms)")
        ax.set_ylabel("throughput (samples/s)")
        ax.set_title(f"{len(front)} of {len(feasible)} feasible configurations are Pareto-optimal")
        ax.legend(loc="best", fontsize="small")
        return ax

    def plot_trials_by_worker(self, ax: Axes | None = None) -> Axes:
        """Each trial's objective value against its number, one colour per worker, one marker per host.

        Failed trials (a worker killed mid-trial among them) sit on the bottom edge as crosses.
        """
        import matplotlib.pyplot as plt

        frame = self.to_frame()
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4.5))
        markers = "osD^vP*X"
        hosts = sorted(frame["host"].unique())
        colours = plt.get_cmap("tab10")
        done = frame[frame["state"] == "complete"]
        for i, (worker, rows) in enumerate(done.groupby("worker", sort=True)):
            host = rows["host"].iloc[0]
            ax.scatter(rows["trial"], rows["value"], color=colours(i % 10), marker=markers[hosts.index(host) % 8],
                       alpha=0.8, label=f"{worker or '?'} ({len(rows)})")
        failed = frame[frame["state"] == "fail"]
        if len(failed):
            ax.scatter(failed["trial"], [done["value"].min() if len(done) else 0] * len(failed), marker="x",
                       color="tab:red", label=f"failed ({len(failed)})")
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{self.objective.column} ({self.objective.direction})")
        ax.set_title(f"{len(frame)} trials of {self.study_key!r} by {frame['worker'].nunique()} worker(s) on "
                     f"{len(hosts)} host(s)")
        ax.legend(loc="best", fontsize="small", title="worker (trials); marker: host")
        return ax

    def export_best(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the best configuration, its figures and the objective as JSON (atomically)."""
        import json

        best = self.best()
        target = Path(path) if path is not None else self.out_dir / "best_config.json"
        record = {**best.to_dict(), "study": self.study_name, "storage": self.storage_label(),
                  "constraints": {"accuracy_budget": self.objective.accuracy_budget,
                                  "p99_target_ms": self.objective.p99_target_ms}}
        with atomic_output(target) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
        return target

    def export_batching_parameters(self, path: str | os.PathLike[str] | None = None, **batching: Any) -> Path:
        """The best batch size and timeout as a TF Serving ``batching_parameters.txt``.

        ``kit.tfserving.batching_parameters`` owns that file format; this hands it the tuned values.
        ``batching`` sets the other ``BatchingConfig`` fields (``max_enqueued_batches``, ...).
        """
        from kit.serve.batching import BatchingConfig
        from kit.tfserving import batching_parameters

        config = self.best().config
        target = Path(path) if path is not None else self.out_dir / "batching_parameters.txt"
        return batching_parameters.write(BatchingConfig(max_batch_size=config.batch_size,
                                                    batch_timeout_micros=config.batch_timeout_micros,
                                                    **batching), target)


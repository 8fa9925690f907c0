"""One study, many workers: hardware fingerprints, the storage, fair measurement and worker processes.

A study in a shared database (PostgreSQL, MySQL, or SQLite for the workers of one machine) may be
worked on by several processes on several machines. Three things keep that honest:

* **Hardware.** Every trial records where it ran (``hardware_record()``: host, CPU model, cores,
  int8 features, accelerators, library versions). A study is bound to the *fingerprint* of its
  first worker: everything but the host name, so identical machines of a fleet share one study,
  while a worker whose hardware or measuring libraries differ is refused (or, with
  ``study_per_hardware``, joins a study of its own, ``NAME@fingerprint``). Results never mix hardware.
* **The storage.** Optuna's ``RDBStorage`` as it is, with its heartbeat: a worker that dies mid-trial
  stops beating, the next worker to start a trial marks that trial failed (``fail_stale_trials``)
  and Optuna's retry callback enqueues it again, so no trial stays RUNNING forever and
  none is lost.
* **Fair measurement.** Workers on one machine disturb each other's timings. When the machine has a
  core for every thread of every worker, each worker is pinned to its own cores; otherwise the
  measuring phase is serialized per host with a lock *in the storage* (a PostgreSQL advisory lock,
  MySQL's ``GET_LOCK``, or a lock file beside a SQLite database), which the database or the kernel
  releases when a worker dies, so a killed worker never blocks the others.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.errors import ConfigError, MissingDependencyError
from kit.profile.sysinfo import usable_cores

log = logging.getLogger(__name__)

#: Libraries whose version changes what a measurement means; the others are recorded, not compared.
MEASURING_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "onnx", "numpy")
#: The parts of ``hardware_record()`` a study is bound to (everything but the host).
FINGERPRINT_KEYS = ("cpu_model", "machine", "logical_cores", "physical_cores", "int8_flags", "accelerators",
                    "libraries")


@functools.lru_cache(maxsize=1)
def accelerators() -> tuple[str, ...]:
    """GPUs that are really there (``nvidia-smi``), not the providers a wheel lists: see DESIGN.md §6."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip()) if out.returncode == 0 else ()


@functools.lru_cache(maxsize=1)
def hardware_record() -> dict[str, Any]:
    """Where a trial runs: host, CPU model, cores, int8 features, accelerators, library versions."""
    from kit.profile.sysinfo import environment

    env = environment()
    libraries = env["libraries"]
    return {"host": socket.gethostname(), "cpu_model": env["cpu_model"], "machine": env["machine"],
            "logical_cores": env["logical_cores"], "physical_cores": env["physical_cores"],
            "int8_flags": list(env["int8_flags"]), "accelerators": list(accelerators()),
            "libraries": {k: libraries[k] for k in MEASURING_LIBRARIES if k in libraries},
            "all_libraries": dict(libraries)}


def fingerprint(record: Mapping[str, Any]) -> str:
    """A short stable id of the hardware part of a ``hardware_record()`` (the host left out)."""
    text = json.dumps({k: record.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def hardware_difference(bound: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: theirs != mine`` for every fingerprint key that differs."""
    return [f"{k}: study {bound.get(k)!r} != this worker {mine.get(k)!r}" for k in FINGERPRINT_KEYS
            if bound.get(k) != mine.get(k)]


# -- the storage ------------------------------------------------------------------------------------
def safe_url(url: str) -> str:
    """The storage URL without credentials, for messages and exported files."""
    text = str(url)
    if "@" in text and "://" in text:
        scheme, rest = text.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return text


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 when that is what is installed."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            try:
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise MissingDependencyError('psycopg[binary]', "A PostgreSQL study storage") from exc
            return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def rdb_storage(url: str, heartbeat_interval_s: float | None = 5.0, grace_period_s: float | None = None,
                max_retry: int = 2):
    """Optuna's ``RDBStorage`` with its heartbeat and ``RetryFailedTrialCallback``; a clear error if unreachable.

    A PostgreSQL URL without ``connect_timeout`` gets 10 s, so a wrong host fails in seconds, not minutes.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    url = normalize_url(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval_s is not None:
        grace = grace_period_s if grace_period_s is not None else max(4 * heartbeat_interval_s, 2.0)
        new_names = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")  # Optuna >= 4.9
        callback = "heartbeat_stale_trial_callback" if new_names else "failed_trial_callback"
        heartbeat = {"heartbeat_interval": max(1, math.ceil(heartbeat_interval_s)), "grace_period": math.ceil(grace),
                     callback: _RetryLogged(max_retry)}
    try:
        with warnings.catch_warnings():  # heartbeat and its retry callback are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            for callback in heartbeat.values():
                if isinstance(callback, _RetryLogged):
                    callback.create()
            return storage
    except ImportError as exc:
        raise MissingDependencyError(getattr(exc, "name", None) or "a database driver",
                                     f"The study storage {safe_url(url)}") from exc
    except (SQLAlchemyError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open the study database {safe_url(url)}: {type(exc).__name__}: {reason}. "
                          f"Is the server running, the URL right (host, port, database, user) and this machine "
                          f"allowed to connect?") from exc


def study_names(url: str) -> list[str]:
    """The studies stored at ``url`` (empty when the database holds none yet); a clear error if unreachable."""
    import optuna

    return list(optuna.get_all_study_names(rdb_storage(url, heartbeat_interval_s=None)))


class _RetryLogged:
    """Optuna's ``RetryHeartbeatStaleTrialCallback`` (``RetryFailedTrialCallback`` before 4.9), plus a log line."""

    def __init__(self, max_retry: int) -> None:
        self.max_retry = max_retry
        self._retry: Any = None

    def create(self) -> None:
        import optuna.storages

        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
            optuna.storages.RetryFailedTrialCallback  # its name before Optuna 4.9
        self._retry = retry(max_retry=self.max_retry, inherit_intermediate_values=False)

    def __call__(self, study: Any, trial: Any) -> None:
        where = trial.user_attrs.get("worker", "an unknown worker")
        log.warning("trial %d (on %s) sent no heartbeat within the grace period: its worker died or hung; marked "
                    "failed and %s", trial.number, where,
                    "enqueued again" if _retries(trial) < self.max_retry else "not retried (retries used up)")
        self._retry(study, trial)


def _retries(trial: Any) -> int:
    return len(trial.system_attrs.get("retry_history", []))


# -- fair measurement -------------------------------------------------------------------------------

# kind: (take the lock, release it, the lock's key from its name). Both wait as long as it takes.
_SQL_LOCKS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "postgresql advisory lock": ("SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)",
                                 lambda name: zlib.crc32(name.encode()) - 2**31),
    "mysql GET_LOCK": ("SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)",
                       lambda name: hashlib.sha1(name.encode()).hexdigest()),
}


class StorageLock:
    """A named mutual-exclusion lock that lives where the study lives; released when its holder dies.

    PostgreSQL: a session advisory lock; MySQL: ``GET_LOCK``; SQLite: ``flock`` on a file beside the
    database; anything else (in-memory storage): a lock of this process only.
    """

    _local_locks: dict[str, threading.Lock] = {}

    def __init__(self, url: str | None, name: str) -> None:
        self.url, self.name = (normalize_url(url) if isinstance(url, str) else None), name
        self._conn: Any = None
        self._file: Any = None
        self.kind = self._kind()

    def _kind(self) -> str:
        if self.url is None:
            return "process"
        if self.url.startswith("postgresql"):
            return "postgresql advisory lock"
        if self.url.startswith("mysql"):
            return "mysql GET_LOCK"
        if self.url.startswith("sqlite:///") and self.url != "sqlite:///:memory:":
            return "lock file"
        return "process"

    def _connection(self):
        if self._conn is None:
            import sqlalchemy

            engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
            self._conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    @contextlib.contextmanager
    def hold(self) -> Iterator[float]:
        """Hold the lock; yields the seconds spent waiting for it."""
        start = time.perf_counter()
        if self.kind in _SQL_LOCKS:
            import sqlalchemy

            acquire, release, key_of = _SQL_LOCKS[self.kind]
            conn, key = self._connection(), {"k": key_of(self.name)}
            conn.execute(sqlalchemy.text(acquire), key)
            try:
                yield time.perf_counter() - start
            finally:
                conn.execute(sqlalchemy.text(release), key)
        elif self.kind == "lock file":
            if self._file is None:  # a FileLock: the kernel frees it when its holder dies, like flock
                from filelock import FileLock

                db = Path(self.url.removeprefix("sqlite:///").split("?", 1)[0])
                digest = hashlib.sha1(self.name.encode()).hexdigest()[:10]
                self._file = FileLock(str(db.with_name(f"{db.name}.{digest}.lock")))
            with self._file:
                yield time.perf_counter() - start
        else:
            lock = self._local_locks.setdefault(self.name, threading.Lock())
            with lock:
                yield time.perf_counter() - start

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._file is not None:
            self._file.release(force=True)
            self._file = None


@dataclass(frozen=True)
class FairnessPlan:
    """How K workers on one machine measure without disturbing each other: ``pin`` or ``lock``."""

    mode: str  # "pin": worker i runs on cores[i]; "lock": one worker measures at a time on this host
    cores: tuple[tuple[int, ...], ...] = ()

    def describe(self) -> str:
        if self.mode == "pin":
            return "each worker pinned to its own cores " + ", ".join(
                f"w{i}: {list(c)}" for i, c in enumerate(self.cores))
        return "measurement serialized across this host's workers by a lock in the study storage"


def plan_fairness(workers: int, threads_per_trial: int, cores: Sequence[int] | None = None) -> FairnessPlan:
    """Pin when every worker gets ``threads_per_trial`` cores of its own; else serialize with the lock."""
    cores = usable_cores() if cores is None else list(cores)
    need = max(1, threads_per_trial)
    if workers > 1 and len(cores) >= workers * need:
        return FairnessPlan("pin", tuple(tuple(cores[i * need:(i + 1) * need]) for i in range(workers)))
    return FairnessPlan("lock")


# -- worker processes -------------------------------------------------------------------------------
@dataclass
class WorkerResult:
    index: int
    exitcode: int | None
    trials: int
    label: str = ""  # the ``worker`` its trials record


def _worker_main(factory: Callable[[], Any], index: int, n_trials: int | None, sampler: str, seed: int,
                 cores: tuple[int, ...] | None, fair: str, timeout_s: float | None) -> None:
    if cores:
        os.sched_setaffinity(0, cores)
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s w{index} %(name)s: %(message)s")
    tuner = factory()
    tuner.fair = fair
    tuner.worker_label = f"{socket.gethostname()}:{os.getpid()}/w{index}"
    try:
        if n_trials is None or n_trials > 0:
            tuner.run(n_trials=n_trials, sampler=sampler, seed=seed, timeout_s=timeout_s)
    finally:
        close = getattr(tuner.evaluate, "close", None)
        if callable(close):
            close()


def shares(total: int, workers: int) -> list[int]:
    """``total`` trials split as evenly as possible over ``workers``."""
    return [total // workers + (i < total % workers) for i in range(workers)]


def run_workers(factory: Callable[[], Any], workers: int, n_trials: int | None, sampler: str = "tpe",
                seed: int = 0, fairness: FairnessPlan | None = None, timeout_s: float | None = None,
                start_method: str = "spawn") -> list[WorkerResult]:
    """Run ``workers`` processes, each ``factory()`` -> ``Tuner`` on the same study, sharing ``n_trials``.

    ``factory`` must be picklable (a module-level function or ``functools.partial``). Each worker gets
    its share of the trials and, for TPE, its own seed (``seed + index``). Grid workers share one seed:
    Optuna's ``GridSampler`` shuffles the grid by its seed and gives trial number n the n-th point, so
    with one order the study's unique trial numbers are unique grid points, however the workers race.
    Returns each worker's exit code.
    """
    import multiprocessing

    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    fairness = fairness or FairnessPlan("lock")
    context = multiprocessing.get_context(start_method)
    counts = [None] * workers if n_trials is None else shares(n_trials, workers)
    procs = []
    for i, count in enumerate(counts):
        cores = fairness.cores[i] if fairness.mode == "pin" else None
        proc = context.Process(target=_worker_main, name=f"kit-tune-w{i}",
                               args=(factory, i, count, sampler, seed if sampler == "grid" else seed + i, cores,
                                     "none" if fairness.mode == "pin" else "lock", timeout_s))
        proc.start()
        procs.append(proc)
    results = []
    for i, proc in enumerate(procs):
        proc.join()
        results.append(WorkerResult(i, proc.exitcode, counts[i] or 0, f"{socket.gethostname()}:{proc.pid}/w{i}"))
        if proc.exitcode != 0:
            log.warning("worker w%d exited with %s%s; a trial it was running is failed by the heartbeat and "
                        "retried by the next worker", i, proc.exitcode,
                        " (killed by a signal)" if (proc.exitcode or 0) < 0 else "")
    return results


def recover(tuner: Any, results: Sequence[WorkerResult], sampler: str, seed: int = 0) -> int:
    """After a worker died: let Optuna's heartbeat declare its trial stale, then run what it left, here.

    Waits out the grace period, then ``tuner.run``: its first trial start fails the dead worker's trial
    and runs the retry Optuna enqueued; grid: every point still missing; TPE: the dead workers' unrun
    shares. Returns how many trials it ran (0 when every worker exited cleanly).
    """
    dead = [r for r in results if r.exitcode != 0]
    if not dead:
        return 0
    frame = tuner.to_frame()
    todo = None
    if sampler != "grid":
        todo = sum(max(0, r.trials - int(((frame["worker"] == r.label) & frame["state"].isin(["complete", "fail"]))
                                         .sum())) for r in dead)
    interval = tuner.heartbeat_interval_s or 5.0
    grace = tuner.grace_period_s if tuner.grace_period_s is not None else max(4 * interval, 2.0)
    log.warning("%d worker(s) died (%s); waiting %.0f s for Optuna's heartbeat to declare their trials stale, then "
                "running the trials they left in this process", len(dead), ", ".join(r.label for r in dead), grace + 1)
    time.sleep(math.ceil(grace) + 1)
    before = len(tuner.to_frame())
    tuner.fair = "lock"
    tuner.run(n_trials=todo, sampler=sampler, seed=seed)
    return len(tuner.to_frame()) - before


def fail_stale_trials(study: Any) -> list[int]:
    """Optuna's ``fail_stale_trials`` (heartbeat): the numbers of the trials it failed just now."""
    import optuna

    before = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
    return sorted(before - after)


class StudyMismatch(ConfigError):
    """The study exists with another search space, objective or hardware than this worker's."""


__all__ = ["FairnessPlan", "StorageLock", "StudyMismatch", "WorkerResult", "accelerators",
           "fail_stale_trials", "fingerprint", "hardware_record", "plan_fairness", "rdb_storage", "recover",
           "run_workers",
           "study_names"]

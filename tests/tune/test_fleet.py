"""Shared studies: hardware-bound, several workers, a real PostgreSQL, a killed worker's trial retried."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import time

import pytest

from kit.errors import ConfigError
from kit.tune import Objective, SearchSpace, TrialConfig, Tuner
from kit.tune.fleet import StorageLock, StudyMismatch, fingerprint, hardware_record, plan_fairness, run_workers, shares

SPACE = SearchSpace(variants=("fp32", "int8"), intra_op_num_threads=(1, 2), graph_optimization_levels=("basic", "all"),
                    batch_sizes=(1, 8), batch_timeouts_micros=(0, 2000))
OBJECTIVE = Objective("p95_latency", accuracy_budget=1.0)
MID = SearchSpace(variants=("fp32", "int8"), intra_op_num_threads=(1, 2), graph_optimization_levels=("basic", "all"),
                  batch_sizes=(1, 8), batch_timeouts_micros=(0,))  # 16 points
SMALL = SearchSpace(variants=("fp32", "int8"), intra_op_num_threads=(1,), graph_optimization_levels=("all",),
                    batch_sizes=(1, 8), batch_timeouts_micros=(0,))


def synthetic(config: TrialConfig, pause_s: float = 0.0) -> dict[str, float]:
    """Deterministic figures (int8 fastest but over budget); records when its 'measurement' ran."""
    start = time.time()
    time.sleep(pause_s)
    p95 = 10.0 / config.intra_op_num_threads * (0.5 if config.variant == "int8" else 1.0) \
        * (0.9 if config.graph_optimization_level == "all" else 1.0) \
        + config.batch_timeout_micros / 1e3 / config.batch_size
    return {"p95_ms": p95, "p99_ms": 1.2 * p95, "samples_per_s": 1e3 * config.batch_size / p95,
            "accuracy_drop_pts": 5.0 if config.variant == "int8" else 0.0, "start": start, "end": time.time()}


def make_tuner(storage: str, study: str, pause_s: float = 0.0, heartbeat_interval_s: float = 5.0,
               grace_period_s: float | None = None, space: SearchSpace = SPACE) -> Tuner:
    """Module level, so a spawned worker process can build it."""
    return Tuner(space, OBJECTIVE, functools.partial(synthetic, pause_s=pause_s), storage=storage, study_name=study,
                 heartbeat_interval_s=heartbeat_interval_s, grace_period_s=grace_period_s)


def hangs_on_int8(config: TrialConfig) -> dict[str, float]:
    if config.variant == "int8":
        time.sleep(3600)  # the test kills this worker here, mid-trial
    return synthetic(config)


def _hanging_worker(storage: str, study: str) -> None:
    tuner = Tuner(SMALL, OBJECTIVE, hangs_on_int8, storage=storage, study_name=study, heartbeat_interval_s=1,
                  grace_period_s=2)
    tuner.run(sampler="grid")


def test_hardware_record_and_its_fingerprint():
    record = hardware_record()
    for key in ("host", "cpu_model", "logical_cores", "int8_flags", "accelerators", "libraries"):
        assert key in record
    assert "onnxruntime" in record["libraries"] or "onnxruntime-gpu" in record["libraries"]
    assert fingerprint(record) == fingerprint({**record, "host": "another-box-of-the-fleet"})  # same hardware
    assert fingerprint(record) != fingerprint({**record, "cpu_model": "Some Other CPU"})
    assert fingerprint(record) != fingerprint({**record, "libraries": {"onnxruntime": "0.0.1"}})


def test_trials_record_where_they_ran_and_a_study_refuses_other_hardware(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    first = make_tuner(url, "s")
    first.run(n_trials=3, sampler="grid")
    frame = first.to_frame()
    assert (frame["host"] == hardware_record()["host"]).all() and (frame["fingerprint"] == first.fingerprint).all()
    assert frame["worker"].str.contains(str(os.getpid())).all()
    trial = first.study.get_trials()[0]
    assert trial.user_attrs["hardware"]["cpu_model"] == hardware_record()["cpu_model"]

    other = {**hardware_record(), "host": "gpu-box", "cpu_model": "Other CPU", "accelerators": ["NVIDIA H200"]}
    monkeypatch.setattr("kit.tune.tuner.hardware_record", lambda: other)
    with pytest.raises(StudyMismatch, match=r"bound to other hardware.*gpu-box.*cpu_model.*--study-per-hardware"):
        make_tuner(url, "s").run(n_trials=1)
    own = Tuner(SPACE, OBJECTIVE, synthetic, storage=url, study_name="s", study_per_hardware=True)
    own.run(n_trials=2, sampler="grid")
    assert own.study_key == f"s@{fingerprint(other)}" and len(own.to_frame()) == 2
    assert (own.to_frame()["host"] == "gpu-box").all()
    monkeypatch.undo()
    assert len(make_tuner(url, "s").to_frame()) == 3  # the first study is untouched, never mixed


def test_a_study_refuses_another_search_space_or_objective(tmp_path):
    url = f"sqlite:///{tmp_path / 'bind.db'}"
    make_tuner(url, "s").run(n_trials=1)
    narrower = SearchSpace(variants=("fp32",), intra_op_num_threads=(1, 2), graph_optimization_levels=("basic", "all"),
                           batch_sizes=(1, 8), batch_timeouts_micros=(0, 2000))
    with pytest.raises(StudyMismatch, match=r"another search space \(variant: study \['fp32', 'int8'\] != \['fp32'\]"):
        Tuner(narrower, OBJECTIVE, synthetic, storage=url, study_name="s").load()
    with pytest.raises(StudyMismatch, match="made for the objective"):
        Tuner(SPACE, Objective("p95_latency", accuracy_budget=2.0), synthetic, storage=url, study_name="s").load()


def test_an_unreachable_database_is_a_clear_error():
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot open the study.*127\.0\.0\.1.*Is the server running") as info:
        make_tuner(f"postgresql://kit:secret@127.0.0.1:{port}/kit", "s").load()
    assert time.perf_counter() - started < 15
    assert "secret" not in str(info.value)  # credentials never in messages


def test_fairness_pins_when_there_are_cores_enough_else_locks():
    assert plan_fairness(2, 2, cores=range(8)).cores == ((0, 1), (2, 3))
    assert plan_fairness(2, 2, cores=range(2)).mode == "lock"  # this 2-core machine
    assert plan_fairness(1, 2, cores=range(8)).mode == "lock"
    assert shares(10, 3) == [4, 3, 3] and sum(shares(7, 2)) == 7


def test_the_sqlite_lock_serializes_and_is_released_when_its_holder_dies(tmp_path):
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    lock = StorageLock(url, "measure")
    assert lock.kind == "lock file"
    ctx = multiprocessing.get_context("fork")
    holder = ctx.Process(target=_hold_forever, args=(url,))
    holder.start()
    time.sleep(0.5)
    holder.kill()
    holder.join()
    with lock.hold() as waited:  # the kernel released the dead holder's lock
        assert waited < 5
    lock.close()


def _hold_forever(url: str) -> None:
    with StorageLock(url, "measure").hold():
        time.sleep(3600)


def test_a_killed_worker_trial_is_failed_by_the_heartbeat_and_retried(tmp_path):
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    make_tuner(url, "k", space=SMALL).load()  # the study exists before the worker starts
    worker = multiprocessing.get_context("fork").Process(target=_hanging_worker, args=(url, "k"))
    worker.start()
    tuner = make_tuner(url, "k", heartbeat_interval_s=1, grace_period_s=2, space=SMALL)
    deadline = time.time() + 60
    while time.time() < deadline:  # until the worker hangs in its first int8 trial
        running = [t for t in tuner.study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        if running and running[0].params.get("variant") == "int8":
            break
        time.sleep(0.2)
    else:
        worker.kill()
        pytest.fail("the worker never reached an int8 trial")
    time.sleep(1.5)  # its heartbeat thread has beaten (Optuna only fails trials that have a heartbeat)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join()
    killed = running[0].number
    time.sleep(3)  # past the grace period
    frame = tuner.run(sampler="grid")  # its next trial start fails the stale one; the retry is run
    failed = frame[frame["state"] == "fail"]
    assert list(failed["trial"]) == [killed]
    assert "no heartbeat" in failed["error"].iloc[0] and "retried as trial" in failed["error"].iloc[0]
    done = frame[frame["state"] == "complete"]
    assert len(done) == SMALL.size and not done.duplicated(subset=list(SMALL.grid())).any()  # none lost, none twice
    assert (done["retry_of"] == killed).sum() == 1
    assert not (frame["state"] == "running").any()


def _grid_with_workers(url: str, study: str, workers: int, pause_s: float):
    factory = functools.partial(make_tuner, url, study, pause_s, space=MID)
    tuner = factory()
    tuner.load(sampler="grid")  # create and bind the study before the workers race to
    results = run_workers(factory, workers, n_trials=tuner.pending(), sampler="grid")
    assert all(r.exitcode == 0 for r in results), results
    return tuner


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_workers_share_a_postgresql_study(postgres_url, tmp_path):
    started = time.perf_counter()
    tuner = _grid_with_workers(postgres_url, "two-workers", 2, pause_s=0.05)
    frame = tuner.to_frame()
    assert len(frame) == MID.size and (frame["state"] == "complete").all()  # every trial stored once
    assert sorted(frame["trial"]) == list(range(MID.size))
    assert not frame.duplicated(subset=list(MID.grid())).any()  # no point measured twice, none lost
    assert frame["worker"].nunique() == 2  # both worked
    metrics = [t.user_attrs["metrics"] for t in tuner.study.get_trials()]
    spans = sorted((m["start"], m["end"]) for m in metrics)
    assert all(a_end <= b_start + 1e-3 for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # lock: one at a time
    assert tuner._storage_lock("measure").kind == "postgresql advisory lock"
    single = make_tuner(f"sqlite:///{tmp_path / 'single.db'}", "one", space=MID)
    single.run(sampler="grid")
    assert tuner.best().config == single.best().config and tuner.best().value == single.best().value
    print(f"two workers on PostgreSQL: {time.perf_counter() - started:.1f} s")


def test_attach_reads_a_study_from_any_hardware_and_plots_it_by_worker(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    url = f"sqlite:///{tmp_path / 'attach.db'}"
    make_tuner(url, "a", space=SMALL).run(sampler="grid")
    monkeypatch.setattr("kit.tune.tuner.hardware_record", lambda: {**hardware_record(), "cpu_model": "Laptop CPU"})
    viewer = Tuner.attach(url, "a")  # a laptop looking at the fleet's study: no refusal, nothing measured
    assert viewer.space == SMALL and viewer.objective == OBJECTIVE
    assert len(viewer.to_frame()) == SMALL.size and viewer.best().config.variant == "fp32"
    ax = viewer.plot_trials_by_worker()
    assert "by 1 worker(s) on 1 host(s)" in ax.get_title()
    with pytest.raises(ConfigError, match="attached read-only"):
        viewer.run(n_trials=1)
    with pytest.raises(ConfigError, match=r"no study 'nope'.*\['a'\]"):
        Tuner.attach(url, "nope")


def dies_once_on_int8_batch8(config: TrialConfig, marker: str) -> dict[str, float]:
    """The worker that first meets int8 at batch 8 is SIGKILLed mid-trial (after its first heartbeat)."""
    if config.variant == "int8" and config.batch_size == 8 and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(1.5)
        os.kill(os.getpid(), signal.SIGKILL)
    return synthetic(config)


def make_mortal_tuner(storage: str, study: str, marker: str) -> Tuner:
    return Tuner(SMALL, OBJECTIVE, functools.partial(dies_once_on_int8_batch8, marker=marker), storage=storage,
                 study_name=study, heartbeat_interval_s=1, grace_period_s=2)


@pytest.mark.slow
def test_a_dead_workers_trials_are_recovered_once(tmp_path):
    from kit.tune.fleet import recover

    url = f"sqlite:///{tmp_path / 'mortal.db'}"
    factory = functools.partial(make_mortal_tuner, url, "m", str(tmp_path / "died"))
    tuner = factory()
    tuner.load(sampler="grid")
    results = run_workers(factory, 2, n_trials=tuner.pending(), sampler="grid")
    assert sorted(r.exitcode for r in results) == [-signal.SIGKILL, 0]
    assert recover(tuner, results, "grid") >= 1
    frame = tuner.to_frame()
    done = frame[frame["state"] == "complete"]
    assert len(done) == SMALL.size and not done.duplicated(subset=list(SMALL.grid())).any()
    failed = frame[frame["state"] == "fail"]
    assert len(failed) == 1 and "retried as trial" in failed["error"].iloc[0]
    assert not frame["state"].isin(["running", "waiting"]).any()

"""Tuner: constraints respected, failures recorded, SQLite resume, grid vs TPE, the ORT evaluator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kit.errors import ConfigError, InferenceError, KitError
from kit.tune import (Objective, OrtEvaluator, SearchSpace, TrialConfig, Tuner, batch_plan,
                      classification_accuracy, pareto_front)

def memory():
    """Optuna's in-memory storage: tests that are not about SQLite need not pay its commits."""
    import optuna

    return optuna.storages.InMemoryStorage()


SPACE = SearchSpace(variants=("fp32", "int8"), threads=(1, 2), graph_levels=("basic", "all"),
                    batch_sizes=(1, 8), batch_timeouts_ms=(0.0, 2.0))


def synthetic(config: TrialConfig) -> dict[str, float]:
    """A cheap deterministic objective: int8 is fastest but loses accuracy; batching pays."""
    p95 = 10.0 / config.threads * (0.5 if config.variant == "int8" else 1.0) \
        * (0.9 if config.graph_level == "all" else 1.0) + config.batch_timeout_ms / config.batch_size
    return {"p95_ms": p95, "p99_ms": 1.2 * p95, "samples_per_s": 1e3 * config.batch_size / p95,
            "accuracy_drop": 0.05 if config.variant == "int8" else 0.0}


def test_infeasible_trials_are_recorded_but_never_chosen(tmp_path):
    tuner = Tuner(SPACE, Objective("p95_latency", accuracy_budget=0.01), synthetic, out_dir=tmp_path,
                  storage=memory())
    frame = tuner.run(sampler="grid")
    assert len(frame) == SPACE.size and (frame["state"] == "complete").all()
    fastest = frame.loc[frame["value"].idxmin()]
    assert fastest["variant"] == "int8" and not fastest["feasible"]  # the fastest point breaks the budget
    best = tuner.best()
    assert best.config.variant == "fp32" and best.config.threads == 2 and best.config.graph_level == "all"
    assert best.value == pytest.approx(frame.loc[frame["feasible"], "value"].min())
    exported = json.loads(tuner.export_best().read_text())
    assert TrialConfig.from_dict(exported["config"]) == best.config
    assert exported["objective"] == {"metric": "p95_ms", "value": best.value}
    from kit.tfserving import batching_parameters

    parameters = batching_parameters.read(tuner.export_batching_parameters())
    assert parameters.max_batch_size == best.config.batch_size
    assert parameters.batch_timeout_micros == round(best.config.batch_timeout_ms * 1000)


def test_p99_target_and_tpe_constraints(tmp_path):
    objective = Objective("throughput", accuracy_budget=None, p99_target_ms=5.0)
    tuner = Tuner(SPACE, objective, synthetic, out_dir=tmp_path, storage=memory())
    frame = tuner.run(n_trials=12, sampler="tpe", seed=1)
    assert len(frame) == 12
    best = tuner.best()
    assert best.metrics["p99_ms"] <= 5.0
    feasible = frame[frame["feasible"]]
    assert best.value == pytest.approx(feasible["value"].max())
    assert (frame.loc[~frame["feasible"], "p99_ms"] > 5.0).all()


def test_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    def flaky(config: TrialConfig) -> dict[str, float]:
        if config.threads == 2:
            raise InferenceError("provider crashed")
        return synthetic(config)

    tuner = Tuner(SPACE, Objective(accuracy_budget=None), flaky, out_dir=tmp_path, storage=memory())
    frame = tuner.run(sampler="grid")
    failed = frame[frame["state"] == "fail"]
    assert len(failed) == SPACE.size // 2
    assert failed["error"].str.contains("InferenceError: provider crashed").all()
    assert tuner.best().config.threads == 1


def test_config_and_programming_errors_stop_the_search(tmp_path):
    def misconfigured(config):
        raise ConfigError("bad value")

    def buggy(config):
        raise ZeroDivisionError("bug")

    with pytest.raises(ConfigError, match="bad value"):
        Tuner(SPACE, Objective(), misconfigured, storage=memory()).run(n_trials=3)
    with pytest.raises(ZeroDivisionError):
        Tuner(SPACE, Objective(), buggy, storage=memory()).run(n_trials=3)
    no_accuracy = Tuner(SPACE, Objective(), lambda c: {"p95_ms": 1.0}, storage=memory())
    no_accuracy.run(n_trials=2)  # completes, but cannot show the accuracy budget holds
    assert not no_accuracy.results()["feasible"].any()
    with pytest.raises(KitError, match="no feasible trial"):
        no_accuracy.best()


def test_sqlite_study_resumes_where_it_stopped(tmp_path):
    space = SearchSpace(variants=("fp32",), threads=(1, 2), graph_levels=("all",), batch_sizes=(1, 8),
                        batch_timeouts_ms=(0.0, 2.0))
    first = Tuner(space, Objective(accuracy_budget=None), synthetic, out_dir=tmp_path, study_name="resume")
    first.run(n_trials=3, sampler="grid")
    assert (tmp_path / "study.db").exists()
    again = Tuner(space, Objective(accuracy_budget=None), synthetic, out_dir=tmp_path, study_name="resume")
    assert len(again.results()) == 3
    frame = again.run(sampler="grid")  # the grid's remaining points only
    assert len(frame) == space.size == 8
    assert frame[list(space.grid())].drop_duplicates().shape[0] == space.size
    assert again.best().config == min(space.configs(), key=lambda c: synthetic(c)["p95_ms"])
    other = SearchSpace(variants=("fp32",), threads=(3,), graph_levels=("all",), batch_sizes=(1,),
                        batch_timeouts_ms=(0.0,))
    with pytest.raises(ConfigError, match="another search space"):
        Tuner(other, Objective(accuracy_budget=None), synthetic, out_dir=tmp_path, study_name="resume").run(n_trials=1)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    shared = Tuner(space, Objective(accuracy_budget=None), synthetic, storage=url, study_name="shared")
    shared.run(n_trials=2)
    assert len(Tuner(space, Objective(accuracy_budget=None), synthetic, storage=url,
                     study_name="shared").results()) == 2


def test_tpe_on_a_third_of_the_grid_budget_finds_a_near_best_point(tmp_path):
    objective = Objective(accuracy_budget=0.01)
    grid = Tuner(SPACE, objective, synthetic, out_dir=tmp_path, study_name="grid", storage=memory())
    grid.run(sampler="grid")
    tpe = Tuner(SPACE, objective, synthetic, out_dir=tmp_path, study_name="tpe", storage=memory())
    tpe.run(n_trials=math.ceil(0.3 * SPACE.size) + 2, sampler="tpe", seed=0)
    assert tpe.best().value <= 1.25 * grid.best().value
    assert 1 <= tpe.trials_to_best() <= len(tpe.results())
    front = pareto_front(grid.results()[grid.results()["feasible"]])
    assert front["p95_ms"].is_monotonic_increasing and front["samples_per_s"].is_monotonic_increasing
    ax = grid.plot_pareto()
    assert ax.get_xlabel() == "p95 latency (ms)"


def test_space_and_objective_validate():
    with pytest.raises(ConfigError):
        SearchSpace(graph_levels=("fast",))
    with pytest.raises(ConfigError):
        SearchSpace(batch_sizes=(0, 4))
    with pytest.raises(ConfigError):
        SearchSpace(threads=(1, 1))
    with pytest.raises(ConfigError):
        Objective(metric="speed")
    with pytest.raises(ConfigError):
        Objective(accuracy_budget=-1)
    with pytest.raises(ConfigError):
        Tuner(SPACE, Objective(), synthetic, storage="nosuchdb://x").load()
    assert SearchSpace().size == len(list(SearchSpace().configs()))


def test_batch_plan_models_a_batcher():
    assert batch_plan(8, 0.0, 1000.0) == (1, 0.0)
    assert batch_plan(8, 2.0, 1000.0) == (3, 2.0)
    formed, wait = batch_plan(4, 10.0, 1000.0)
    assert formed == 4 and wait == pytest.approx(3.0)


def test_ort_evaluator_measures_real_sessions(mlp_onnx, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    with OrtEvaluator({"a": mlp_onnx, "b": mlp_onnx}, feeds=lambda n: {"features": x[:n]},
                      accuracy=classification_accuracy(x, np.zeros(64, np.int64), "features")) as evaluate:
        space = SearchSpace(variants=("a", "b"), threads=(1,), graph_levels=("all",), batch_sizes=(1, 4),
                            batch_timeouts_ms=(0.0, 5.0))
        tuner = Tuner(space, Objective(accuracy_budget=0.0), evaluate, out_dir=tmp_path, storage=memory())
        frame = tuner.run(sampler="grid")
        assert (frame["state"] == "complete").all() and frame["feasible"].all()
        assert (frame["accuracy_drop"] == 0).all() and (frame["p95_ms"] > 0).all()
        assert len(evaluate._engines) == 2 and evaluate.measurements == 4  # sessions reused across batches
        bad = Tuner(SearchSpace(variants=("a",), providers=("CUDAExecutionProvider",), threads=(1,),
                                graph_levels=("all",), batch_sizes=(1,), batch_timeouts_ms=(0.0,)),
                    Objective(accuracy_budget=None), evaluate, storage=memory())
        frame = bad.run(sampler="grid")
    if frame["state"].iloc[0] == "fail":  # no GPU here: recorded, not raised
        assert "ProviderUnavailableError" in frame["error"].iloc[0]

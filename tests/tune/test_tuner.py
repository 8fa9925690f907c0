"""Tuner: constraints respected, failures recorded, SQLite resume, grid vs TPE, the ORT evaluator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kit.errors import ConfigError, InferenceError, KitError
from kit.optimize import pareto_front
from kit.profile.scenarios import LoadConfig
from kit.tune import Objective, OrtEvaluator, SearchSpace, TrialConfig, Tuner, batch_plan, classification_accuracy


def memory():
    """Optuna's in-memory storage: tests that are not about SQLite need not pay its commits."""
    import optuna

    return optuna.storages.InMemoryStorage()


QUICK = LoadConfig(warmup_queries=1, min_duration_s=0.01, min_queries=3)
SPACE = SearchSpace(variants=("fp32", "int8"), intra_op_num_threads=(1, 2), graph_optimization_levels=("basic", "all"),
                    batch_sizes=(1, 8), batch_timeouts_micros=(0, 2000))


def synthetic(config: TrialConfig) -> dict[str, float]:
    """A cheap deterministic objective: int8 is fastest but loses accuracy; batching pays."""
    p95 = 10.0 / config.intra_op_num_threads * (0.5 if config.variant == "int8" else 1.0) \
        * (0.9 if config.graph_optimization_level == "all" else 1.0) \
        + config.batch_timeout_micros / 1e3 / config.batch_size
    return {"p95_ms": p95, "p99_ms": 1.2 * p95, "samples_per_s": 1e3 * config.batch_size / p95,
            "accuracy_drop_pts": 5.0 if config.variant == "int8" else 0.0}


def test_infeasible_trials_are_recorded_but_never_chosen(tmp_path):
    tuner = Tuner(SPACE, Objective("p95_latency", accuracy_budget=1.0), synthetic, out_dir=tmp_path,
                  storage=memory())
    frame = tuner.run(sampler="grid")
    assert len(frame) == SPACE.size and (frame["state"] == "complete").all()
    fastest = frame.loc[frame["value"].idxmin()]
    assert fastest["variant"] == "int8" and not fastest["feasible"]  # the fastest point breaks the budget
    best = tuner.best()
    assert best.config.variant == "fp32" and best.config.intra_op_num_threads == 2
    assert best.config.graph_optimization_level == "all"
    assert best.value == pytest.approx(frame.loc[frame["feasible"], "value"].min())
    exported = json.loads(tuner.export_best().read_text())
    assert TrialConfig.from_dict(exported["config"]) == best.config
    assert exported["objective"] == {"optimize": "p95_latency", "column": "p95_ms", "value": best.value}
    assert exported["constraints"] == {"accuracy_budget": 1.0, "p99_target_ms": None}
    from kit.tfserving import batching_parameters

    parameters = batching_parameters.read(tuner.export_batching_parameters())
    assert parameters.max_batch_size == best.config.batch_size
    assert parameters.batch_timeout_micros == best.config.batch_timeout_micros


def test_best_row_rechooses_from_the_frame_as_the_tuner_would(tmp_path):
    tuner = Tuner(SPACE, Objective("throughput", accuracy_budget=1.0), synthetic, storage=memory())
    frame = tuner.run(sampler="grid")
    row = tuner.objective.best_row(frame)
    assert row["value"] == tuner.best().value and row["feasible"]
    relaxed = Objective("throughput", accuracy_budget=5.0).best_row(frame)  # int8 (5 points) now allowed
    assert relaxed["variant"] == "int8" and relaxed["samples_per_s"] >= row["samples_per_s"]
    assert Objective("throughput", accuracy_budget=1.0, p99_target_ms=0.1).best_row(frame) is None
    assert Objective("p95_latency", accuracy_budget=None).best_row(frame)["p95_ms"] == frame["p95_ms"].min()


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
        if config.intra_op_num_threads == 2:
            raise InferenceError("provider crashed")
        return synthetic(config)

    tuner = Tuner(SPACE, Objective(accuracy_budget=None), flaky, out_dir=tmp_path, storage=memory())
    frame = tuner.run(sampler="grid")
    failed = frame[frame["state"] == "fail"]
    assert len(failed) == SPACE.size // 2
    assert failed["error"].str.contains("InferenceError: provider crashed").all()
    assert tuner.best().config.intra_op_num_threads == 1


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
    assert not no_accuracy.to_frame()["feasible"].any()
    with pytest.raises(KitError, match="no feasible trial"):
        no_accuracy.best()


@pytest.mark.parametrize("bug", [TypeError("bad operand"), AttributeError("no attribute 'x'"),
                                 NameError("name 'y' is not defined")])
def test_a_programming_error_in_the_evaluator_propagates(bug):
    """Only KitError becomes a failed trial; a bug in the evaluator stops the search with its own type."""
    calls = []

    def buggy(config: TrialConfig) -> dict[str, float]:
        calls.append(config)
        raise bug

    tuner = Tuner(SPACE, Objective(accuracy_budget=None), buggy, storage=memory())
    with pytest.raises(type(bug), match=str(bug).split("'")[0]):
        tuner.run(n_trials=5)
    assert len(calls) == 1  # the first bug stopped the search
    frame = tuner.to_frame()
    assert len(frame) == 1 and frame["state"].iloc[0] == "fail" and not frame["feasible"].any()


def test_a_programming_error_in_the_ort_evaluators_accuracy_propagates(mlp_onnx):
    def broken_accuracy(predictor):
        return predictor.no_such_attribute

    with OrtEvaluator({"a": mlp_onnx}, feeds=lambda n: {"features": np.zeros((n, 16), np.float32)},
                      accuracy=broken_accuracy, profile_config=QUICK) as evaluate:
        space = SearchSpace(variants=("a",), intra_op_num_threads=(1,), graph_optimization_levels=("all",),
                            batch_sizes=(1,), batch_timeouts_micros=(0,))
        with pytest.raises(AttributeError, match="no_such_attribute"):
            Tuner(space, Objective(), evaluate, storage=memory()).run(sampler="grid")


def test_storage_errors_are_config_errors_and_bugs_in_opening_are_not(tmp_path, monkeypatch):
    for url in ("nosuchdb://x", "not a url", f"sqlite:///{tmp_path}/no/such/folder/study.db"):
        with pytest.raises(ConfigError, match="cannot open the study"):
            Tuner(SPACE, Objective(), synthetic, storage=url).load()
    url = f"sqlite:///{tmp_path / 'direction.db'}"
    Tuner(SPACE, Objective("p95_latency"), synthetic, storage=url, study_name="s").load()
    with pytest.raises(ConfigError, match="made to minimize"):  # Optuna would silently keep "minimize"
        Tuner(SPACE, Objective("throughput"), synthetic, storage=url, study_name="s").load()
    import optuna

    def bug(**kwargs):
        raise TypeError("a bug, not a storage problem")

    monkeypatch.setattr(optuna, "create_study", bug)
    with pytest.raises(TypeError, match="a bug"):
        Tuner(SPACE, Objective(), synthetic, storage=memory()).load()


def test_accuracy_budget_and_drop_are_percentage_points(mlp_onnx, tmp_path):
    """98.00 % -> 97.25 % is a drop of 0.75 points: within a 1-point budget, outside a 0.5-point one.

    Reading a fraction where points are meant (or the reverse) is a 100x error; it would pass 0.75
    points under a 0.5 budget (0.0075 <= 0.5) or reject it under a 1.0 budget (0.75 > 0.01). The
    same budget must also mean the same in ``kit.optimize.recommend``.
    """
    import pandas as pd

    from kit.optimize import recommend

    scores = {"ref": 0.98, "cand": 0.9725}
    with OrtEvaluator({"ref": mlp_onnx, "cand": mlp_onnx}, feeds=lambda n: {"features": np.zeros((n, 16), np.float32)},
                      accuracy=lambda predictor: scores[predictor.name], profile_config=QUICK) as evaluate:
        space = SearchSpace(variants=("ref", "cand"), intra_op_num_threads=(1,), graph_optimization_levels=("all",),
                            batch_sizes=(1,), batch_timeouts_micros=(0,))
        for budget, cand_feasible in ((1.0, True), (0.8, True), (0.5, False)):
            tuner = Tuner(space, Objective(accuracy_budget=budget), evaluate, storage=memory(),
                          study_name=f"budget-{budget}")
            frame = tuner.run(sampler="grid").set_index("variant")
            assert frame.loc["cand", "accuracy"] == pytest.approx(0.9725)  # accuracy itself stays a fraction
            assert frame.loc["cand", "accuracy_drop_pts"] == pytest.approx(0.75)
            assert frame.loc["ref", "accuracy_drop_pts"] == 0.0 and frame.loc["ref", "feasible"]
            assert frame.loc["cand", "feasible"] == cand_feasible, budget
            table = pd.DataFrame({"name": ["ref", "cand"], "batch_size": [1, 1], "p50_ms": [2.0, 1.0],
                                  "speedup": [1.0, 2.0], "accuracy_drop_pts": frame.loc[["ref", "cand"],
                                                                                        "accuracy_drop_pts"].to_list()})
            assert (recommend(table, accuracy_budget=budget).best == "cand") == cand_feasible, budget


def test_sqlite_study_resumes_where_it_stopped(tmp_path):
    space = SearchSpace(variants=("fp32",), intra_op_num_threads=(1, 2), graph_optimization_levels=("all",),
                        batch_sizes=(1, 8), batch_timeouts_micros=(0, 2000))
    first = Tuner(space, Objective(accuracy_budget=None), synthetic, out_dir=tmp_path, study_name="resume")
    first.run(n_trials=3, sampler="grid")
    assert (tmp_path / "study.db").exists()
    again = Tuner(space, Objective(accuracy_budget=None), synthetic, out_dir=tmp_path, study_name="resume")
    assert len(again.to_frame()) == 3
    frame = again.run(sampler="grid")  # the grid's remaining points only
    assert len(frame) == space.size == 8
    assert frame[list(space.grid())].drop_duplicates().shape[0] == space.size
    assert again.best().config == min(space.configs(), key=lambda c: synthetic(c)["p95_ms"])
    other = SearchSpace(variants=("fp32",), intra_op_num_threads=(3,), graph_optimization_levels=("all",),
                        batch_sizes=(1,), batch_timeouts_micros=(0,))
    with pytest.raises(ConfigError, match="another search space"):
        Tuner(other, Objective(accuracy_budget=None), synthetic, out_dir=tmp_path, study_name="resume").run(n_trials=1)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    shared = Tuner(space, Objective(accuracy_budget=None), synthetic, storage=url, study_name="shared")
    shared.run(n_trials=2)
    assert len(Tuner(space, Objective(accuracy_budget=None), synthetic, storage=url,
                     study_name="shared").to_frame()) == 2


def test_tpe_on_a_third_of_the_grid_budget_finds_a_near_best_point(tmp_path):
    objective = Objective(accuracy_budget=1.0)
    grid = Tuner(SPACE, objective, synthetic, out_dir=tmp_path, study_name="grid", storage=memory())
    grid.run(sampler="grid")
    tpe = Tuner(SPACE, objective, synthetic, out_dir=tmp_path, study_name="tpe", storage=memory())
    tpe.run(n_trials=math.ceil(0.3 * SPACE.size) + 2, sampler="tpe", seed=0)
    assert tpe.best().value <= 1.25 * grid.best().value
    assert 1 <= tpe.trials_to_best() <= len(tpe.to_frame())
    feasible = grid.to_frame()[grid.to_frame()["feasible"]]
    front = feasible[pareto_front(feasible, x="p95_ms", y="samples_per_s")].sort_values("p95_ms")
    assert len(front) >= 1
    assert front["p95_ms"].is_monotonic_increasing and front["samples_per_s"].is_monotonic_increasing
    ax = grid.plot_pareto()
    assert ax.get_xlabel() == "p95 latency (ms)"


def test_space_and_objective_validate():
    with pytest.raises(ConfigError):
        SearchSpace(graph_optimization_levels=("fast",))
    with pytest.raises(ConfigError):
        SearchSpace(batch_sizes=(0, 4))
    with pytest.raises(ConfigError):
        SearchSpace(intra_op_num_threads=(1, 1))
    with pytest.raises(ConfigError):
        SearchSpace(batch_timeouts_micros=(0.5,))  # int microseconds, as TF Serving's batch_timeout_micros
    with pytest.raises(ConfigError):
        Objective(optimize="speed")
    with pytest.raises(ConfigError):
        Objective(optimize="p95_ms")  # the column is not the objective's name
    with pytest.raises(ConfigError):
        Objective(accuracy_budget=-1)
    with pytest.raises(ConfigError):
        Tuner(SPACE, Objective(), synthetic, storage="nosuchdb://x").load()
    assert SearchSpace().size == len(list(SearchSpace().configs()))


def test_batch_plan_models_a_batcher():
    assert batch_plan(8, 0, 1000.0) == (1, 0.0)
    assert batch_plan(8, 2000, 1000.0) == (3, 2.0)
    formed, wait = batch_plan(4, 10_000, 1000.0)
    assert formed == 4 and wait == pytest.approx(3.0)


def test_ort_evaluator_measures_real_sessions(mlp_onnx, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    with OrtEvaluator({"a": mlp_onnx, "b": mlp_onnx}, feeds=lambda n: {"features": x[:n]},
                      accuracy=classification_accuracy(x, np.zeros(64, np.int64), "features")) as evaluate:
        space = SearchSpace(variants=("a", "b"), intra_op_num_threads=(1,), graph_optimization_levels=("all",),
                            batch_sizes=(1, 4), batch_timeouts_micros=(0, 5000))
        tuner = Tuner(space, Objective(accuracy_budget=0.0), evaluate, out_dir=tmp_path, storage=memory())
        frame = tuner.run(sampler="grid")
        assert (frame["state"] == "complete").all() and frame["feasible"].all()
        assert (frame["accuracy_drop_pts"] == 0).all() and (frame["p95_ms"] > 0).all()
        assert len(evaluate._engines) == 2 and evaluate.measurements == 4  # sessions reused across batches
        bad = Tuner(SearchSpace(variants=("a",), providers=("CUDAExecutionProvider",), intra_op_num_threads=(1,),
                                graph_optimization_levels=("all",), batch_sizes=(1,), batch_timeouts_micros=(0,)),
                    Objective(accuracy_budget=None), evaluate, storage=memory())
        frame = bad.run(sampler="grid")
    if frame["state"].iloc[0] == "fail":  # no GPU here: recorded, not raised
        assert "ProviderUnavailableError" in frame["error"].iloc[0]


def test_ort_evaluator_re_measures_a_configuration_in_fresh_rounds(mlp_onnx):
    with OrtEvaluator({"a": mlp_onnx}, feeds=lambda n: {"features": np.zeros((n, 16), np.float32)},
                      profile_config=QUICK) as evaluate:
        config = TrialConfig("a", intra_op_num_threads=1, graph_optimization_level="all", batch_size=1)
        evaluate(config)
        rounds = evaluate.rounds(config, 3)
        assert len(rounds) == 3 and evaluate.measurements == 1  # fresh measurements, not the trial's cache
        assert all(r["samples_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in rounds)
        with pytest.raises(ConfigError, match="rounds"):
            evaluate.rounds(config, 0)

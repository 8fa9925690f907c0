"""TPE on 30 % of the grid's budget against the full grid, on the default search space.

Tunes the zoo's digits CNN (float32 and dynamic int8 variants) on ONNX Runtime over the default
``SearchSpace`` (variant x intra_op_num_threads x graph_optimization_level x batch_size x
batch_timeout_micros) for two objectives: p95 latency, and throughput under a p99 target, both with
an accuracy budget of one percentage point. The grid evaluates
every point; TPE gets ``ceil(0.3 * grid size)`` trials, for several seeds.

Every configuration is measured for real (one cached ONNX Runtime session per engine configuration,
latency measured once per batch size actually formed) and both searches read the same measurements,
so the ratio compares the searches, not two moments of a noisy shared machine. Studies live in
Optuna's in-memory storage here: the comparison is about the samplers, and SQLite's commit per
trial would only add minutes (the tests cover SQLite storage and resume).

Target: TPE's best within 5 % of the grid's best (ratio <= 1.05, worse-direction ratio), median over
seeds. Run: ``.venv/bin/python benchmarks/bench_tuner.py``
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kit.optimize.quantize_onnx import quantize_dynamic  # noqa: E402
from kit.profile.loadgen import LoadConfig  # noqa: E402
from kit.profile.sysinfo import environment  # noqa: E402
from kit.tune import Objective, OrtEvaluator, SearchSpace, Tuner, classification_accuracy  # noqa: E402
from kit.zoo import digits_data, get_model  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
TPE_SHARE = 0.30
TARGET_GAP = 0.05


def worse_ratio(objective: Objective, tpe: float, grid: float) -> float:
    """>= 1: how much worse TPE's best is than the grid's (1.0: it found the grid's best)."""
    return tpe / grid if objective.direction == "minimize" else grid / tpe


def main() -> int:
    started = time.perf_counter()
    env = environment()
    print(f"CPU: {env['cpu_model']} ({env['affinity_cores']} cores usable); onnxruntime "
          f"{env['libraries'].get('onnxruntime-gpu', env['libraries'].get('onnxruntime'))}, "
          f"optuna {env['libraries'].get('optuna')}")
    work = Path(tempfile.mkdtemp(prefix="kit-bench-tuner-"))
    fp32 = get_model("digits_cnn", format="onnx")
    int8 = quantize_dynamic(fp32, out=work / "digits_cnn-int8.onnx")
    data = digits_data()
    space = SearchSpace()  # the default search space
    budget = math.ceil(TPE_SHARE * space.size)
    print(f"search space: {space.size} points {space.grid()}")
    print(f"grid budget: {space.size} trials; TPE budget: {budget} trials ({TPE_SHARE:.0%}), seeds {list(SEEDS)}\n")
    evaluate = OrtEvaluator({"fp32": fp32, "int8": int8}, feeds=lambda n: {"image": data.x_test[:n]},
                            accuracy=classification_accuracy(data.x_test, data.y_test, "image"),
                            profile_config=LoadConfig(warmup_queries=3, min_duration_s=0.15, min_queries=15))
    objectives = {"p95 latency": Objective("p95_latency", accuracy_budget=1.0),
                  "throughput, p99 <= 5 ms": Objective("throughput", accuracy_budget=1.0, p99_target_ms=5.0)}
    import optuna

    rows, met_all = [], True
    with evaluate:
        for label, objective in objectives.items():
            t0 = time.perf_counter()
            grid = Tuner(space, objective, evaluate, out_dir=work, study_name=f"grid-{objective.optimize}",
                         storage=optuna.storages.InMemoryStorage())
            grid.run(sampler="grid")
            grid_best, grid_seconds = grid.best(), time.perf_counter() - t0
            ratios, needed = [], []
            for seed in SEEDS:
                tpe = Tuner(space, objective, evaluate, out_dir=work, study_name=f"tpe-{objective.optimize}-{seed}",
                            storage=optuna.storages.InMemoryStorage())
                tpe.run(n_trials=budget, sampler="tpe", seed=seed)
                ratios.append(worse_ratio(objective, tpe.best().value, grid_best.value))
                needed.append(tpe.trials_to_best())
            median_ratio = statistics.median(ratios)
            met = median_ratio <= 1 + TARGET_GAP
            met_all &= met
            rows.append((label, objective, grid, grid_best, grid_seconds, ratios, needed, median_ratio, met))
    unit = {"p95_ms": "ms", "samples_per_s": "samples/s"}
    for label, objective, grid, best, seconds, ratios, needed, median_ratio, met in rows:
        frame = grid.to_frame()
        p99 = '' if objective.p99_target_ms is None else f', p99 <= {objective.p99_target_ms} ms'
        print(f"== objective: {label} ({objective.direction} {objective.column}; accuracy drop <= "
              f"{objective.accuracy_budget:g} points{p99})")
        print(f"   grid : best {best.value:.4g} {unit[objective.column]} ({best.config.variant}, intra_op_num_threads "
              f"{best.config.intra_op_num_threads}, graph_optimization_level {best.config.graph_optimization_level}, "
              f"batch_size {best.config.batch_size}, batch_timeout_micros {best.config.batch_timeout_micros}); "
              f"{int(frame['feasible'].sum())}/{len(frame)} feasible; "
              f"needs all {space.size} trials to know its best (first met at trial {grid.trials_to_best()} "
              f"in its seeded random order); {seconds:.1f} s")
        print(f"   TPE  : worse-ratio to grid best per seed {[round(r, 4) for r in ratios]}; trials to its best "
              f"{needed} (of {budget})")
        print(f"   ratio TPE/grid (median over seeds): {median_ratio:.4f}   target <= {1 + TARGET_GAP:.2f}   "
              f"{'MET' if met else 'NOT MET'}\n")
    print(f"measured engine configurations: {evaluate.measurements} (variant x intra_op_num_threads x "
          f"graph_optimization_level x formed batch); "
          f"total {time.perf_counter() - started:.0f} s")
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())

"""``kit tune``: one tuning job, prepared once, then run by K worker processes (or joined from elsewhere).

``TuneJob.prepare()`` resolves the model (a zoo name or an ``.onnx`` file), makes the int8 variant
(ONNX Runtime dynamic quantization) when the space has one, and writes the inputs the workers
measure with to ``inputs.npz`` in the output folder. Accuracy: with labels (a ``labels`` array in
``--data``, or the zoo's digits), the share of correct arg-max predictions; without labels, the
labels are the float32 model's own arg-max on those inputs, so ``accuracy_drop_pts`` is top-1
disagreement with float32 in points (DESIGN §6: never trust a variant not compared with its parent).
A prepared job is picklable, so each worker process builds its own ``Tuner`` with ``job.tuner()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kit.artifacts import file_sha256
from kit.errors import ConfigError
from kit.profile.sysinfo import usable_cores
from kit.tune.evaluate import OrtEvaluator, classification_accuracy
from kit.tune.space import Objective, SearchSpace
from kit.tune.tuner import Tuner

LABELS = "labels"


@dataclass(frozen=True)
class TuneJob:
    model: str
    space: SearchSpace
    objective: Objective
    study: str = "kit-tune"
    storage: str | None = None
    data: str | None = None
    out_dir: str = "reports/tune"
    study_per_hardware: bool = False
    arrival_rate: float = 2000.0
    min_duration_s: float = 0.15
    variants: dict[str, str] = field(default_factory=dict)  # set by prepare()
    inputs: str | None = None  # set by prepare(): the .npz the workers measure with
    model_digest: str = ""

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(Path(self.out_dir) / 'study.db').resolve()}"

    def prepare(self) -> TuneJob:
        from kit.artifacts import ModelArtifact
        from kit.engines.onnxruntime import OnnxRuntimeEngine

        out = Path(self.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        unknown = sorted(set(self.space.variants) - {"fp32", "int8"})
        if unknown:
            raise ConfigError(f"kit tune makes the variants 'fp32' (the model) and 'int8' (dynamic quantization); "
                              f"the space names {unknown}")
        fp32 = self._resolve_model()
        variants = {"fp32": str(fp32.path)}
        if "int8" in self.space.variants:
            from kit.optimize.quantize_onnx import quantize_dynamic

            variants["int8"] = str(quantize_dynamic(fp32, out=out / f"{Path(fp32.path).stem}-int8.onnx").path)
        x, labels = self._load_inputs(fp32.name)
        with OnnxRuntimeEngine(ModelArtifact.from_path(variants["fp32"]), name="fp32") as engine:
            names = [s.name for s in engine.input_specs]
            missing = sorted(set(names) - set(x))
            if missing:
                raise ConfigError(f"--data lacks the model's inputs {missing}; it has {sorted(x)} (expected "
                                  f"{names}, plus an optional {LABELS!r} array)")
            x = {k: x[k] for k in names}
            if labels is None and self.objective.accuracy_budget is not None:
                if len(names) != 1:
                    raise ConfigError(f"accuracy needs a single-input model or labels; this one has inputs "
                                      f"{names}: pass --accuracy-budget none")
                out_name = engine.output_specs[0].name
                labels = np.concatenate([np.argmax(engine.predict({names[0]: x[names[0]][i:i + 256]})[out_name], -1)
                                         for i in range(0, len(x[names[0]]), 256)])
        if labels is not None and len(names) != 1:
            raise ConfigError(f"labels score a single-input classifier; this model has inputs {names}")
        inputs = out / "inputs.npz"
        np.savez(inputs, **x, **({LABELS: labels} if labels is not None else {}))
        digest = file_sha256(variants["fp32"])[:16]
        return replace(self, variants=variants, inputs=str(inputs), model_digest=digest)

    def _resolve_model(self):
        from kit.artifacts import ModelArtifact

        path = Path(self.model)
        if path.suffix == ".onnx":
            if not path.is_file():
                raise ConfigError(f"no ONNX model at {path}")
            return ModelArtifact.from_path(path, name=path.stem)
        if path.exists():
            raise ConfigError(f"kit tune measures ONNX models: convert {path} to .onnx first (kit.optimize / tf2onnx)")
        from kit.zoo import MODELS, get_model

        if self.model not in MODELS:
            raise ConfigError(f"--model {self.model!r} is neither an .onnx file nor a zoo model {sorted(MODELS)}")
        return get_model(self.model, format="onnx")

    def _load_inputs(self, name: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        if self.data is None:
            from kit.zoo import MODELS, zoo_samples

            if self.model not in MODELS:
                raise ConfigError(f"--data is needed for {self.model}: a .npz named after the model's inputs "
                                  f"(optional {LABELS!r})")
            x, y = zoo_samples(self.model, 256)
            return dict(x), y
        try:
            with np.load(self.data) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read --data {self.data} as a .npz: {exc}") from exc
        return arrays, arrays.pop(LABELS, None)

    def tuner(self) -> Tuner:
        """The ``Tuner`` a worker runs; needs ``prepare()`` first."""
        if not self.inputs:
            raise ConfigError("TuneJob.tuner() needs a prepared job (TuneJob.prepare())")
        from kit.profile.scenarios import LoadConfig

        with np.load(self.inputs) as npz:
            arrays = {k: npz[k] for k in npz.files}
        labels = arrays.pop(LABELS, None)

        def feeds(n: int) -> dict[str, np.ndarray]:
            rows = np.arange(n) % len(next(iter(arrays.values())))
            return {k: np.ascontiguousarray(v[rows]) for k, v in arrays.items()}

        accuracy = None
        if labels is not None and self.objective.accuracy_budget is not None:
            (name, x), = arrays.items()
            accuracy = classification_accuracy(x, labels, name)
        evaluate = OrtEvaluator(self.variants, feeds=feeds, accuracy=accuracy, reference="fp32"
                                if "fp32" in self.variants else None, arrival_rate=self.arrival_rate,
                                profile_config=LoadConfig(warmup_queries=3, min_duration_s=self.min_duration_s,
                                                             min_queries=10))
        return Tuner(self.space, self.objective, evaluate, out_dir=self.out_dir, storage=self.storage_url,
                     study_name=self.study, study_per_hardware=self.study_per_hardware,
                     identity={"model": self.model_digest})


def threads_per_trial(space: SearchSpace) -> int:
    """The most cores one trial may use (0 threads: ONNX Runtime takes every core)."""
    cores = len(usable_cores())
    return max(cores if t == 0 else t for t in space.intra_op_num_threads)


def run_job(job: TuneJob, *, workers: int, trials: int | None, sampler: str, seed: int,
            say: Callable[[str], None] = print) -> tuple[Tuner, int, float]:
    """What ``kit tune`` runs: join or create the study, measure ``trials`` over ``workers`` processes, recover.

    Returns the tuner (for its frame and best configuration), the trials run here and the seconds they took.
    One worker runs in this process; several run as child processes, and the trials a dead worker left are
    failed by Optuna's heartbeat and run here. ``say`` gets one line per step (the CLI prints them).
    """
    import time

    from kit.tune.fleet import plan_fairness, recover, run_workers

    tuner = job.tuner()
    tuner.load(sampler=sampler, seed=seed)  # creates or joins the study; refuses a mismatch now
    n_trials = tuner.pending() if sampler == "grid" and trials is None else trials
    if n_trials is None:
        raise ConfigError("--trials N is needed with --sampler tpe (a grid search runs the points it still lacks)")
    fairness = plan_fairness(workers, threads_per_trial(job.space))
    say(f"study {tuner.study_key!r} in {tuner.storage_label()}: {job.space.size} configurations, hardware "
        f"{tuner.fingerprint} on {tuner.hardware['host']}; {n_trials} trial(s) over {workers} worker(s); "
        f"fairness: {fairness.describe()}")
    started = time.perf_counter()
    if workers == 1:  # in this process; the lock still keeps other `kit tune`s on this host out
        tuner.fair = "lock"
        if n_trials:
            tuner.run(n_trials=n_trials, sampler=sampler, seed=seed)
        tuner.evaluate.close()
    else:
        results = run_workers(job.tuner, workers, n_trials, sampler=sampler, seed=seed, fairness=fairness)
        for r in results:
            say(f"worker w{r.index} ({r.label}): {r.trials} trial(s), exit code {r.exitcode}")
        recovered = recover(tuner, results, sampler, seed)
        if recovered:
            say(f"ran {recovered} trial(s) here that dead workers left (their stale trials failed and retried)")
    return tuner, n_trials, time.perf_counter() - started


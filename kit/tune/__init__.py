"""Auto-tuning: a declared search space, an objective under constraints, Optuna TPE and grid search.

Names are the ecosystem's: ``intra_op_num_threads`` and ``graph_optimization_level`` (ONNX Runtime),
``batch_timeout_micros`` (TF Serving, int microseconds); ``accuracy_budget`` and ``accuracy_drop_pts``
are percentage points, as in ``kit.optimize``. ``Tuner.to_frame()`` is one row per trial; the
latency-throughput Pareto front is ``kit.optimize.pareto_front``.
"""

from kit.tune.evaluate import OrtEvaluator, batch_plan, classification_accuracy
from kit.tune.space import OBJECTIVES, Objective, SearchSpace, TrialConfig
from kit.tune.tuner import BestTrial, Tuner

__all__ = ["BestTrial", "OBJECTIVES", "Objective", "OrtEvaluator", "SearchSpace", "TrialConfig", "Tuner",
           "batch_plan", "classification_accuracy"]

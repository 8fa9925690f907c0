"""Auto-tuning: a declared search space, an objective under constraints, Optuna TPE and grid search."""

from kit.tune.evaluate import OrtEvaluator, batch_plan, classification_accuracy
from kit.tune.space import Objective, SearchSpace, TrialConfig
from kit.tune.tuner import BestTrial, Tuner, pareto_front

__all__ = ["BestTrial", "Objective", "OrtEvaluator", "SearchSpace", "TrialConfig", "Tuner", "batch_plan",
           "classification_accuracy", "pareto_front"]

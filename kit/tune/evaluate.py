"""Measure one tuner configuration on ONNX Runtime: real variants, real sessions, real latency.

``OrtEvaluator(config)`` loads the configured variant with the configured provider,
``intra_op_num_threads`` and ``graph_optimization_level`` (one cached session per engine
configuration), measures its latency at the batch size a dynamic batcher would really form, and its
accuracy against the reference variant (``accuracy`` a fraction in [0, 1], as ``kit.optimize``
reports it; ``accuracy_drop_pts`` in percentage points, the unit of ``Objective.accuracy_budget``).

The batcher's effect is modelled from measurements rather than simulated with threads, so a trial
costs a fraction of a second and does not depend on how busy the machine's other cores are: with
requests arriving at ``arrival_rate`` per second, a batcher with ``batch_size`` B and
``batch_timeout_micros`` T (as seconds) dispatches ``b = min(B, 1 + floor(rate * T))`` requests at
once, and the first request of a batch waits ``min(T, (b - 1) / rate)`` for it to fill. A request's
latency is that wait plus the measured latency of a batch of b; throughput is ``b`` samples per
*median* batch latency, because on a shared machine the mean is set by other processes' stalls
rather than by the configuration (the percentiles keep those stalls: a user sees them). The wait
charged is the first request's, the longest in the batch, so the latency figures are conservative.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact
from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError, InferenceError
from kit.profile.loadgen import profile
from kit.profile.scenarios import LoadConfig
from kit.profile.stats import latency_summary
from kit.tune.space import TrialConfig

FeedsFn = Callable[[int], Feeds]
AccuracyFn = Callable[[Predictor], float]


def classification_accuracy(x: np.ndarray, y: np.ndarray, input_name: str, output_name: str | None = None,
                            batch_size: int = 256) -> AccuracyFn:
    """An accuracy function: the share of ``x`` whose arg-max output equals ``y``."""
    if len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")

    def accuracy(predictor: Predictor) -> float:
        name = output_name or predictor.output_specs[0].name
        correct = 0
        for start in range(0, len(x), batch_size):
            out = predictor.predict({input_name: x[start:start + batch_size]})[name]
            correct += int((np.argmax(out, axis=-1) == y[start:start + batch_size]).sum())
        return correct / len(x)

    return accuracy


def batch_plan(batch_size: int, batch_timeout_micros: int, arrival_rate: float) -> tuple[int, float]:
    """(requests per dispatched batch, ms the first one waits) for a batcher at ``arrival_rate``/s."""
    timeout_s = batch_timeout_micros / 1e6
    formed = min(batch_size, 1 + math.floor(arrival_rate * timeout_s + 1e-9))
    wait_ms = min(timeout_s, (formed - 1) / arrival_rate) * 1e3
    return formed, wait_ms


@dataclass
class OrtEvaluator:
    """Callable ``TrialConfig -> figures`` for ``Tuner``; see the module docstring.

    ``variants`` maps the space's variant names to ONNX artifacts (or paths); ``feeds(n)`` returns
    a valid batch of n; ``accuracy`` scores a predictor (e.g. ``classification_accuracy``), compared
    with the ``reference`` variant (default: the first) on the same provider.
    """

    variants: Mapping[str, ModelArtifact | str]
    feeds: FeedsFn
    accuracy: AccuracyFn | None = None
    reference: str | None = None
    arrival_rate: float = 2000.0
    profile_config: LoadConfig = field(default_factory=lambda: LoadConfig(warmup_queries=3, min_duration_s=0.15,
                                                                                min_queries=15))
    _engines: dict[tuple, Any] = field(default_factory=dict, init=False, repr=False)
    _latency: dict[tuple, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _accuracy: dict[tuple, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.variants:
            raise ConfigError("variants must name at least one model")
        self.reference = self.reference or next(iter(self.variants))
        if self.reference not in self.variants:
            raise ConfigError(f"reference {self.reference!r} is not one of the variants {sorted(self.variants)}")
        if not (self.arrival_rate > 0 and math.isfinite(self.arrival_rate)):
            raise ConfigError(f"arrival_rate must be a finite number of requests/s > 0, got {self.arrival_rate}")

    def engine(self, config: TrialConfig) -> Predictor:
        """The cached session for ``config``'s variant, provider, threads and graph optimization level."""
        from kit.engines.onnxruntime import OnnxRuntimeEngine

        if config.variant not in self.variants:
            raise ConfigError(f"variant {config.variant!r} is not one of {sorted(self.variants)}")
        key = (config.variant, config.provider, config.intra_op_num_threads, config.graph_optimization_level)
        if key not in self._engines:
            self._engines[key] = OnnxRuntimeEngine(self.variants[config.variant], name=config.variant,
                                                   **config.ort_options())
        return self._engines[key]

    def _measure(self, config: TrialConfig, batch: int) -> np.ndarray:
        key = (config.variant, config.provider, config.intra_op_num_threads, config.graph_optimization_level, batch)
        if key not in self._latency:
            result = profile(self.engine(config), self.feeds(batch), self.profile_config)
            if result.errors and not len(result.latencies_s):
                raise InferenceError(f"every query of {config.variant} at batch {batch} failed: "
                                     f"{result.error_messages[:1]}")
            self._latency[key] = result.latencies_s
        return self._latency[key]

    def _score(self, variant: str, config: TrialConfig) -> float:
        key = (variant, config.provider)
        if key not in self._accuracy:
            probe = TrialConfig(variant, provider=config.provider, intra_op_num_threads=config.intra_op_num_threads,
                                graph_optimization_level=config.graph_optimization_level)
            self._accuracy[key] = float(self.accuracy(self.engine(probe)))
        return self._accuracy[key]

    @staticmethod
    def _figures(latencies: np.ndarray, formed: int, wait_ms: float) -> dict[str, float]:
        summary = latency_summary(latencies + wait_ms / 1e3)
        return {"p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"], "p99_ms": summary["p99_ms"],
                "samples_per_s": formed / float(np.median(latencies)), "formed_batch": float(formed),
                "wait_ms": wait_ms}

    def rounds(self, config: TrialConfig, n: int) -> list[dict[str, float]]:
        """``config``'s latency figures measured afresh ``n`` times (no accuracy, nothing cached).

        The best of many noisy trials is partly the luckiest measurement (the winner's curse), so a
        report states the chosen configuration re-measured over rounds, with their range, rather
        than the trial's own figure.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"rounds must be an int >= 1, got {n!r}")
        formed, wait_ms = batch_plan(config.batch_size, config.batch_timeout_micros, self.arrival_rate)
        out = []
        for _ in range(n):
            result = profile(self.engine(config), self.feeds(formed), self.profile_config)
            if not len(result.latencies_s):
                raise InferenceError(f"every query of {config.variant} at batch {formed} failed: "
                                     f"{result.error_messages[:1]}")
            out.append(self._figures(result.latencies_s, formed, wait_ms))
        return out

    def __call__(self, config: TrialConfig) -> dict[str, float]:
        formed, wait_ms = batch_plan(config.batch_size, config.batch_timeout_micros, self.arrival_rate)
        figures = self._figures(self._measure(config, formed), formed, wait_ms)
        if self.accuracy is not None:
            figures["accuracy"] = self._score(config.variant, config)
            figures["accuracy_drop_pts"] = 100.0 * (self._score(self.reference, config) - figures["accuracy"])
        return figures

    @property
    def measurements(self) -> int:
        """How many (engine configuration, formed batch) latency measurements were taken so far."""
        return len(self._latency)

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    def __enter__(self) -> OrtEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""ONNX Runtime engine: providers that tell the truth, session options, a zero-cost fast path.

``predict`` hands the feeds straight to ``InferenceSession.run``; only when ONNX Runtime
refuses them do we check the feeds against the model's specs to explain why. That keeps
the kit's per-call overhead well under a microsecond (``benchmarks/bench_engine_overhead.py``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact
from kit.config import require_int, resolve
from kit.engines.base import Feeds, Outputs, PredictorBase
from kit.errors import (
    Closed,
    ConfigError,
    InferenceError,
    InputError,
    MissingDependencyError,
    ModelLoadError,
    ProviderUnavailableError,
    first_line,
)
from kit.specs import TensorSpec, check_feeds, describe, fast_path_ok

log = logging.getLogger(__name__)

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")
EXECUTION_MODES = ("sequential", "parallel")
ProviderArg = str | tuple[str, Mapping[str, Any]]

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def import_onnxruntime():
    """Import onnxruntime with its C++ logging quietened, or say what to install."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("onnxruntime-gpu", "The ONNX Runtime engine") from exc
    ort.set_default_logger_severity(4)  # errors become exceptions the kit translates
    return ort


@dataclass(frozen=True)
class OrtOptions:
    """Session options for ONNX Runtime; names mirror ``onnxruntime.SessionOptions``.

    ``providers`` are names, ``(name, options)`` pairs or ``CudaOptions``/``TensorRTOptions``
    in priority order. A requested provider that does not really load raises
    ``ProviderUnavailableError`` unless ``allow_fallback`` is set, in which case the fallback
    is warned about and recorded.
    """

    providers: tuple[ProviderArg, ...] = ("CPUExecutionProvider",)
    graph_optimization_level: str = "all"
    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0
    execution_mode: str = "sequential"
    optimized_model_filepath: str | None = None
    allow_fallback: bool = False
    session_config: Mapping[str, str] = field(default_factory=dict)
    enable_profiling: bool = False
    profile_file_prefix: str | None = None  # where the profiler writes (default: ./onnxruntime_profile_*)

    def __post_init__(self) -> None:
        from kit.engines.providers import provider_arg  # that module imports this one

        providers = self.providers
        if isinstance(providers, str) or not isinstance(providers, Sequence) or (
                len(providers) == 2 and isinstance(providers[0], str) and isinstance(providers[1], Mapping)):
            providers = (providers,)  # one name, options object or (name, options) pair
        object.__setattr__(self, "providers", tuple(provider_arg(p) for p in providers))
        if not self.providers:
            raise ConfigError("providers must name at least one execution provider")
        if self.graph_optimization_level not in GRAPH_OPTIMIZATION_LEVELS:
            raise ConfigError(f"graph_optimization_level must be one of {GRAPH_OPTIMIZATION_LEVELS}, "
                              f"got {self.graph_optimization_level!r}")
        if self.execution_mode not in EXECUTION_MODES:
            raise ConfigError(f"execution_mode must be one of {EXECUTION_MODES}, got {self.execution_mode!r}")
        for name in ("intra_op_num_threads", "inter_op_num_threads"):
            require_int(name, getattr(self, name), 0, hint=" (0 lets ONNX Runtime choose)")

    @property
    def provider_names(self) -> list[str]:
        return [p if isinstance(p, str) else p[0] for p in self.providers]

    def session_options(self):
        ort = import_onnxruntime()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "layout": getattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT",
                              ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization_level]
        so.intra_op_num_threads = self.intra_op_num_threads
        so.inter_op_num_threads = self.inter_op_num_threads
        so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                             else ort.ExecutionMode.ORT_SEQUENTIAL)
        if self.optimized_model_filepath:
            so.optimized_model_filepath = str(self.optimized_model_filepath)
        so.enable_profiling = self.enable_profiling
        if self.profile_file_prefix:
            so.profile_file_prefix = str(self.profile_file_prefix)
        for key, value in self.session_config.items():
            so.add_session_config_entry(key, str(value))
        return so

    def to_record(self) -> dict[str, Any]:
        return {"providers": self.provider_names, "graph_optimization_level": self.graph_optimization_level,
                "intra_op_num_threads": self.intra_op_num_threads,
                "inter_op_num_threads": self.inter_op_num_threads, "execution_mode": self.execution_mode}


def _dim(d: Any) -> int | str | None:
    if isinstance(d, int):
        return d if d >= 0 else None
    return d if isinstance(d, str) and d else None


def _specs(args: Sequence[Any]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(a.name, np.dtype(_ORT_DTYPES.get(a.type, np.float32)),
                            tuple(_dim(d) for d in a.shape)) for a in args)


class OnnxRuntimeEngine(PredictorBase):
    """A Predictor over ``onnxruntime.InferenceSession``."""

    def __init__(self, model: str | os.PathLike[str] | ModelArtifact | bytes,
                 options: OrtOptions | None = None, name: str | None = None, **overrides: Any) -> None:
        from kit.engines.providers import library_problem, validate_provider_names

        ort = import_onnxruntime()
        self.options = options = resolve(OrtOptions, options, overrides)
        validate_provider_names(options.provider_names)
        source: bytes | str
        if isinstance(model, bytes):
            source, self.path, default_name = model, None, "model"
        else:
            path = model.path if isinstance(model, ModelArtifact) else Path(model)
            if not path.exists():
                raise ModelLoadError(f"ONNX model not found: {path}")
            if path.is_dir():
                raise ModelLoadError(f"{path} is a directory; the ONNX Runtime engine expects a .onnx file")
            source, self.path, default_name = str(path), path, path.stem
        self.name = name or (model.name if isinstance(model, ModelArtifact) else default_name)
        providers = list(options.providers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ORT warns about fallback on stderr; we report it below
            try:
                self._session = ort.InferenceSession(source, sess_options=options.session_options(),
                                                     providers=providers, enable_fallback=0)
            except Exception as exc:
                self._session = self._cpu_session_after_provider_failure(ort, source, options, exc)
        self.active_providers: list[str] = list(self._session.get_providers())
        self.fallback: list[str] = [p for p in options.provider_names if p not in self.active_providers]
        if self.fallback:
            reasons = [f"{p}: {problem}" for p in self.fallback if (problem := library_problem(p))]
            message = (f"requested execution provider(s) {self.fallback} did not load for {self.name}; "
                       f"the session runs on {self.active_providers}"
                       + (f" ({'; '.join(reasons)})" if reasons else ""))
            if not options.allow_fallback:
                self._session = None
                raise ProviderUnavailableError(message + " (pass allow_fallback=True to accept that)")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            log.warning(message)
        self._input_specs = _specs(self._session.get_inputs())
        self._output_specs = _specs(self._session.get_outputs())
        self._output_names = [s.name for s in self._output_specs]
        self._input_names = frozenset(s.name for s in self._input_specs)

    def _cpu_session_after_provider_failure(self, ort, source, options: OrtOptions, exc: Exception):
        """Tell a provider that cannot start (TensorRT libraries missing...) from a bad model.

        If the model loads on CPU alone, the requested providers were at fault: that is a
        ``ProviderUnavailableError``, or with ``allow_fallback`` a recorded CPU session.
        """
        where = self.path or "the model bytes"
        if options.provider_names == ["CPUExecutionProvider"]:
            raise ModelLoadError(f"ONNX Runtime could not load {where}: {first_line(exc)}") from exc
        try:
            session = ort.InferenceSession(source, sess_options=options.session_options(),
                                           providers=["CPUExecutionProvider"], enable_fallback=0)
        except Exception:
            raise ModelLoadError(f"ONNX Runtime could not load {where}: {first_line(exc)}") from exc
        if not options.allow_fallback:
            raise ProviderUnavailableError(
                f"execution provider(s) {options.provider_names} failed to start for {self.name}: "
                f"{first_line(exc)} (pass allow_fallback=True to run on CPU instead)") from exc
        return session

    @property
    def session(self):
        """The underlying ``InferenceSession`` for what the kit does not wrap (IO binding...)."""
        if self._session is None:
            raise Closed(f"engine {self.name!r} is closed")
        return self._session

    def predict(self, feeds: Feeds) -> Outputs:
        if not fast_path_ok(feeds, self._input_names):
            # ONNX Runtime would read non-native byte order as native, answer an empty batch, and log its own
            # error line for a missing input: check (and convert) first, as every engine does
            if self._session is None:
                raise Closed(f"engine {self.name!r} is closed")
            feeds = check_feeds(self._input_specs, feeds)
        try:
            return dict(zip(self._output_names, self._session.run(self._output_names, feeds)))
        except Exception as exc:  # only the slow path pays for explaining
            arrays = self._explain(exc, feeds)
        try:
            return dict(zip(self._output_names, self._session.run(self._output_names, arrays)))
        except Exception as exc:
            raise InferenceError(f"ONNX Runtime failed on {self.name!r}: {first_line(exc)}") from exc

    def _explain(self, exc: Exception, feeds: Feeds) -> dict[str, np.ndarray]:
        if self._session is None:
            raise Closed(f"engine {self.name!r} is closed") from exc
        arrays = check_feeds(self._input_specs, feeds)  # raises InputError naming the expectation
        if all(isinstance(feeds[k], np.ndarray) for k in arrays):
            raise InputError(f"ONNX Runtime refused the inputs of {self.name!r}: {first_line(exc)}; "
                             f"the model expects {describe(self._input_specs)}") from exc
        return arrays  # lists or scalars converted: run again

    def _close(self) -> None:
        self._session = None

    def describe(self) -> dict[str, Any]:
        return {"predictor": type(self).__name__, "engine": "onnxruntime", "name": self.name,
                "requested_providers": self.options.provider_names, "providers": self.active_providers,
                "fallback": self.fallback, **{k: v for k, v in self.options.to_record().items()
                                              if k != "providers"}}

"""Execution providers that tell the truth: which ones really run here, why the others do not.

``onnxruntime.get_available_providers()`` lists the providers a wheel was *built* with:
onnxruntime-gpu lists CUDA and TensorRT on a machine with no GPU, and a session asked for
CUDA quietly runs on CPU. So ``discover_providers`` opens a real session on a tiny model
for each listed provider, checks ``session.get_providers()`` and the output, and when a
provider did not load it finds out why by loading the provider's shared library itself
(ONNX Runtime's own log, which names the missing library, is silenced by the kit).

``choose_providers`` then measures the providers that work on the user's model and returns
the fastest order with CPU last as the fallback. A requested provider that does not load
raises ``ProviderUnavailableError`` unless ``allow_fallback=True``; either way it is in
the result.

``CudaOptions`` and ``TensorRTOptions`` are validated configs that turn into the
``(name, options)`` pairs ``OrtOptions.providers`` takes.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.config import require_int
from kit.engines.onnxruntime import ProviderArg, import_onnxruntime
from kit.errors import ConfigError, first_line

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_PROBE_WIDTH = 8

# Shared library each provider lives in (those not built into libonnxruntime itself).
_PROVIDER_LIBRARIES = {
    CUDA: "libonnxruntime_providers_cuda.so",
    TENSORRT: "libonnxruntime_providers_tensorrt.so",
    "OpenVINOExecutionProvider": "libonnxruntime_providers_openvino.so",
    "DnnlExecutionProvider": "libonnxruntime_providers_dnnl.so",
    "MIGraphXExecutionProvider": "libonnxruntime_providers_migraphx.so",
    "NvTensorRTRTXExecutionProvider": "libonnxruntime_providers_nv_tensorrt_rtx.so",
}
_NVIDIA_PROVIDERS = (CUDA, TENSORRT, "NvTensorRTRTXExecutionProvider")


# ---------------------------------------------------------------------------------------------
# provider options as validated configs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaOptions:
    """Options of the CUDA provider (names as ONNX Runtime documents them).

    ``gpu_mem_limit_bytes`` caps the provider's memory arena (``None``: no cap);
    ``enable_cuda_graph`` replays a captured graph, which needs fixed input/output
    addresses: use it with ``kit.engines.iobinding.IoBoundEngine(..., reuse_buffers=True)``.
    """

    device_id: int = 0
    gpu_mem_limit_bytes: int | None = None
    arena_extend_strategy: str = "kNextPowerOfTwo"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    do_copy_in_default_stream: bool = True
    enable_cuda_graph: bool = False

    ARENA_STRATEGIES = ("kNextPowerOfTwo", "kSameAsRequested")
    CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")

    def __post_init__(self) -> None:
        require_int("device_id", self.device_id, 0)
        require_int("gpu_mem_limit_bytes", self.gpu_mem_limit_bytes, allow_none=True)
        if self.arena_extend_strategy not in self.ARENA_STRATEGIES:
            raise ConfigError(f"arena_extend_strategy must be one of {self.ARENA_STRATEGIES}, "
                              f"got {self.arena_extend_strategy!r}")
        if self.cudnn_conv_algo_search not in self.CONV_ALGO_SEARCH:
            raise ConfigError(f"cudnn_conv_algo_search must be one of {self.CONV_ALGO_SEARCH}, "
                              f"got {self.cudnn_conv_algo_search!r}")

    @property
    def name(self) -> str:
        return CUDA

    def provider(self) -> tuple[str, dict[str, str]]:
        """The ``(name, options)`` pair for ``OrtOptions(providers=...)``."""
        opts = {"device_id": str(self.device_id), "arena_extend_strategy": self.arena_extend_strategy,
                "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
                "do_copy_in_default_stream": str(int(self.do_copy_in_default_stream)),
                "enable_cuda_graph": str(int(self.enable_cuda_graph))}
        if self.gpu_mem_limit_bytes is not None:
            opts["gpu_mem_limit"] = str(self.gpu_mem_limit_bytes)
        return CUDA, opts


@dataclass(frozen=True)
class TensorRTOptions:
    """Options of the TensorRT provider: precision and an engine cache so builds happen once.

    Building a TensorRT engine takes seconds to minutes; ``engine_cache_dir`` keeps the
    built engines so the next session with the same model and shapes starts at once.
    """

    device_id: int = 0
    fp16: bool = False
    int8: bool = False
    engine_cache_dir: str | None = None
    max_workspace_size_bytes: int | None = None

    def __post_init__(self) -> None:
        require_int("device_id", self.device_id, 0)
        require_int("max_workspace_size_bytes", self.max_workspace_size_bytes, allow_none=True)
        if self.engine_cache_dir is not None:
            if not str(self.engine_cache_dir).strip():
                raise ConfigError("engine_cache_dir must be a directory path or None, got an empty string")
            path = Path(self.engine_cache_dir)
            if path.exists() and not path.is_dir():
                raise ConfigError(f"engine_cache_dir {path} exists and is not a directory")

    @property
    def name(self) -> str:
        return TENSORRT

    def provider(self) -> tuple[str, dict[str, str]]:
        opts = {"device_id": str(self.device_id), "trt_fp16_enable": str(int(self.fp16)),
                "trt_int8_enable": str(int(self.int8))}
        if self.engine_cache_dir is not None:
            Path(self.engine_cache_dir).mkdir(parents=True, exist_ok=True)
            opts.update(trt_engine_cache_enable="1", trt_engine_cache_path=str(self.engine_cache_dir))
        if self.max_workspace_size_bytes is not None:
            opts["trt_max_workspace_size"] = str(self.max_workspace_size_bytes)
        return TENSORRT, opts


ProviderSpec = ProviderArg | CudaOptions | TensorRTOptions


def provider_arg(spec: ProviderSpec) -> ProviderArg:
    """A name, ``(name, options)`` pair or options object as what ONNX Runtime takes."""
    if isinstance(spec, (CudaOptions, TensorRTOptions)):
        return spec.provider()
    if isinstance(spec, str):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        return spec[0], {str(k): str(v) for k, v in spec[1].items()}
    raise ConfigError(f"a provider must be a name, a (name, options) pair, CudaOptions or TensorRTOptions; "
                      f"got {spec!r}")


def provider_name(spec: ProviderSpec) -> str:
    arg = provider_arg(spec)
    return arg if isinstance(arg, str) else arg[0]


def validate_provider_names(names: Sequence[str]) -> None:
    """Raise ``ConfigError`` for names ONNX Runtime does not know (typos, wrong case)."""
    ort = import_onnxruntime()
    known = set(ort.get_all_providers())
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = [k for k in known if k.lower() == name.lower()
                     or k.lower().startswith(name.lower().removesuffix("executionprovider"))]
            if close:
                hints.append(f"{name!r} -> did you mean {close[0]!r}?")
        raise ConfigError(f"unknown execution provider(s) {unknown}; ONNX Runtime knows {sorted(known)} "
                          f"(built into this wheel: {ort.get_available_providers()})"
                          + (f"; {'; '.join(hints)}" if hints else ""))


# ---------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProviderStatus:
    """What one provider really does here: listed by the wheel, session on it, correct output."""

    name: str
    listed: bool
    loads: bool
    runs: bool
    reason: str
    session_providers: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def works(self) -> bool:
        return self.loads and self.runs

    def to_record(self) -> dict[str, Any]:
        return {"provider": self.name, "listed": self.listed, "loads": self.loads, "runs": self.runs,
                "works": self.works, "reason": self.reason, "session_providers": ", ".join(self.session_providers),
                "probe_s": round(self.seconds, 4)}


def library_problem(provider: str) -> str | None:
    """Why the provider's shared library cannot be loaded (the dynamic loader's own words), or None."""
    library = _PROVIDER_LIBRARIES.get(provider)
    if library is None:
        return None
    ort = import_onnxruntime()
    path = Path(ort.__file__).parent / "capi" / library
    if not path.exists():
        return f"{library} is not part of this onnxruntime wheel"
    try:
        ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LAZY", 1) | getattr(ctypes, "RTLD_LOCAL", 0))
    except OSError as exc:
        return f"{library} cannot be loaded: {str(exc).replace(str(path) + ': ', '')}"
    return None


def _device_problem(provider: str) -> str | None:
    if provider in _NVIDIA_PROVIDERS and not any(Path("/dev").glob("nvidia[0-9]*")):
        return "no NVIDIA device (no /dev/nvidia*): the library loads but there is no GPU to run on"
    return None


@functools.lru_cache(maxsize=1)
def _probe_model() -> bytes:
    from kit.engines.probe import make_add_model

    with tempfile.TemporaryDirectory() as tmp:
        return make_add_model(Path(tmp) / "probe.onnx", width=_PROBE_WIDTH).read_bytes()


def probe_provider(spec: ProviderSpec) -> ProviderStatus:
    """Open a session on a tiny model with ``spec`` first and check it really runs there."""
    ort = import_onnxruntime()
    arg = provider_arg(spec)
    name = provider_name(spec)
    validate_provider_names([name])
    listed = name in ort.get_available_providers()
    if not listed:
        return ProviderStatus(name, False, False, False, "not built into this onnxruntime wheel "
                              f"(it lists {ort.get_available_providers()})")
    providers = [arg] if name == CPU else [arg, CPU]
    so = ort.SessionOptions()
    so.log_severity_level = 4
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # enable_fallback=0: ORT would otherwise print an "EP Error" banner and retry on CPU
            session = ort.InferenceSession(_probe_model(), sess_options=so, providers=providers,
                                           enable_fallback=0)
        except Exception as exc:  # a provider that throws instead of falling back (TensorRT)
            reason = library_problem(name) or first_line(exc)
            return ProviderStatus(name, True, False, False, reason, (), time.perf_counter() - start)
    active = tuple(session.get_providers())
    if active[0] != name:
        reason = (library_problem(name) or _device_problem(name)
                  or f"ONNX Runtime created the session on {list(active)} instead (cause not reported)")
        return ProviderStatus(name, True, False, False, reason, active, time.perf_counter() - start)
    x = np.arange(2 * _PROBE_WIDTH, dtype=np.float32).reshape(2, _PROBE_WIDTH)
    try:
        (y,) = session.run(None, {"x": x})
    except Exception as exc:
        return ProviderStatus(name, True, True, False, f"session created but run failed: {first_line(exc)}",
                              active, time.perf_counter() - start)
    if not np.allclose(y, x + 1):
        return ProviderStatus(name, True, True, False, "session ran but returned wrong values", active,
                              time.perf_counter() - start)
    return ProviderStatus(name, True, True, True, "ok", active, time.perf_counter() - start)


def discover_providers(providers: Sequence[ProviderSpec] | None = None) -> list[ProviderStatus]:
    """Probe every listed provider (or the given ones) and say which run here and why not."""
    if providers is None:
        providers = import_onnxruntime().get_available_providers()
    validate_provider_names([provider_name(p) for p in providers])
    statuses = [probe_provider(p) for p in providers]
    for status in statuses:
        log.info("provider %s: %s", status.name, status.reason)
    return statuses


def working_providers(providers: Sequence[ProviderSpec] | None = None) -> list[str]:
    """Names of the providers that really run here, in the order given."""
    return [s.name for s in discover_providers(providers) if s.works]


def providers_frame(statuses: Sequence[ProviderStatus]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([s.to_record() for s in statuses])

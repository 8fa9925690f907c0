"""Environment capture: what hardware and software a measurement was taken on.

Every result carries this, because a figure without its CPU (and its int8 features such
as AVX512-VNNI), library versions and commit cannot be compared with anything.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

LIBRARIES = ("kit", "numpy", "onnx", "onnxruntime-gpu", "onnxruntime", "onnxoptimizer", "tensorflow",
             "tf2onnx", "ai-edge-litert", "keras", "papermill", "pandas", "scikit-learn", "optuna")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512bw", "avx2", "asimddp", "i8mm")



def usable_cores() -> list[int]:
    """The CPU ids this process may run on (its affinity), or every CPU where the OS has no affinity call."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))

def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (Linux), empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_fast_int8(flags: set[str] | None = None) -> bool:
    """Whether int8 kernels are likely to beat float32 (VNNI, AMX or Arm dot-product)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=cwd or Path(__file__).parent, capture_output=True, text=True, timeout=5)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """A JSON-ready record of the machine and software; cached for the process."""
    import psutil

    flags = cpu_flags()
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "affinity_cores": len(usable_cores()),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "int8_flags": sorted(flags & set(INT8_FLAGS)),
        "fast_int8": has_fast_int8(flags),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "ort_available_providers": ort_providers(),
        "git_commit": git_commit(),
    }


def environment_frame() -> pd.DataFrame:
    """The environment as a two-column table for notebooks."""
    import pandas as pd

    env = dict(environment())
    libs = env.pop("libraries")
    rows = [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in env.items()]
    rows += [(f"version: {k}", v) for k, v in libs.items()]
    return pd.DataFrame(rows, columns=["item", "value"]).set_index("item")

"""Where the memory goes: resident memory of one model, measured alone in a child process.

As optimum-benchmark does, each model is measured in a fresh Python process, so what one
variant allocated never inflates the next one's figure, and the runtime's own import is not
charged to the model:

1. baseline: resident memory (``VmRSS``) after importing the runtime and reading the feeds;
   the peak mark (``VmHWM``) is reset there (``/proc/self/clear_refs``), so the peak below
   is the peak *after* the baseline;
2. load: the engine is created (``load_s``, resident memory after it);
3. first inference (``first_s``, resident memory after it);
4. steady state: ``requests`` more requests; resident memory after them and the peak.

Every figure is MB above the baseline. On Linux they come from ``/proc/self/status``;
elsewhere the peak comes from ``resource.getrusage`` (``ru_maxrss``), which cannot be
reset, so it also counts the imports (``peak_source`` says which). An error in the child
comes back as the kit error it was (``ModelLoadError``, ``InputError``...), without its
traceback; a child that dies (killed for memory...) is a ``KitError`` naming its exit code.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelLike, as_artifact
from kit.config import require_int
from kit.errors import ConfigError, KitError, first_line

MB = 2**20
_CHILD = "import sys; from kit.profile.memory import _main; sys.exit(_main(sys.argv[1:]))"


@dataclass(frozen=True)
class MemoryResult:
    """One model's memory, MB above the baseline (resident memory after imports), and its load time."""

    name: str
    baseline_mb: float  # resident memory after imports, absolute
    load_mb: float  # resident after the engine is created
    first_mb: float  # resident after the first inference
    steady_mb: float  # resident after ``requests`` more
    peak_mb: float  # highest resident at any point after the baseline
    load_s: float  # engine creation, seconds
    first_s: float  # first inference, seconds
    requests: int
    peak_source: str  # "VmHWM" (reset at the baseline) or "ru_maxrss" (counts the imports too)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def _status_kb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0): the peak then starts from now."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else math.nan


def _peak_mb() -> tuple[float, str]:
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024, "VmHWM"
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB on Linux
    return (peak / MB if sys.platform == "darwin" else peak / 1024), "ru_maxrss"


def _import_runtime(fmt: str) -> None:
    """Import the runtime ``fmt`` needs, so the baseline holds it and the model's figure does not."""
    if fmt == "onnx":
        from kit.engines.onnxruntime import import_onnxruntime

        import_onnxruntime()
    elif fmt == "tflite":
        from kit.engines.tflite import interpreter_class

        interpreter_class()
    elif fmt in ("savedmodel", "keras"):
        from kit._quiet import import_tensorflow

        import_tensorflow()


def _measure_here(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The child's work: baseline, load, first inference, steady state (see the module's docstring)."""
    from kit.engines.registry import create_engine

    _import_runtime(spec["format"])
    with np.load(spec["feeds"]) as npz:
        feeds = {k: npz[k] for k in npz.files}
    reset = _reset_peak()
    base = _rss_mb()
    start = time.perf_counter()
    engine = create_engine(spec["path"], engine=spec.get("engine"), **spec.get("engine_options", {}))
    load_s = time.perf_counter() - start
    load = _rss_mb()
    try:
        start = time.perf_counter()
        engine.predict(feeds)
        first_s = time.perf_counter() - start
        first = _rss_mb()
        for _ in range(spec["requests"]):
            engine.predict(feeds)
        steady = _rss_mb()
    finally:
        engine.close()
    peak, source = _peak_mb()
    peak = max(peak, load, first, steady)  # the kernel updates VmHWM lazily; a later VmRSS can be higher
    if not reset and source == "VmHWM":
        source = "VmHWM (not reset: counts the imports too)"
    return {"name": spec["name"], "baseline_mb": base, "load_mb": load - base, "first_mb": first - base,
            "steady_mb": steady - base, "peak_mb": peak - base, "load_s": load_s, "first_s": first_s,
            "requests": spec["requests"], "peak_source": source}


def _error_from(record: Mapping[str, Any]) -> KitError:
    """The child's error as the kit error it was (or a ``KitError`` saying what it was)."""
    from kit import errors

    cls = getattr(errors, record.get("type", ""), None)
    message = record.get("message", "")
    if isinstance(cls, type) and issubclass(cls, KitError):
        try:
            return cls(message)
        except TypeError:  # errors with their own constructor (MissingDependencyError)
            pass
    return KitError(f"{record.get('type', 'error')}: {message}")


def measure_memory(model: ModelLike, feeds: Mapping[str, np.ndarray], requests: int = 10, *,
                   engine: str | None = None, name: str | None = None, timeout_s: float = 600.0,
                   **engine_options: Any) -> MemoryResult:
    """Resident memory of ``model`` answering ``feeds``, measured in a fresh child process.

    ``engine_options`` go to ``create_engine`` in the child (JSON values: threads, optimization
    level...). Raises the child's kit error if the model fails to load or run there.
    """
    require_int("requests", requests, 0)
    art = as_artifact(model)
    label = name or art.name
    if (engine or art.format) == "tfserving":
        raise ConfigError(f"{label} is served by TensorFlow Serving in another process: its memory is the server's")
    with tempfile.TemporaryDirectory(prefix="kit-memory-") as folder:
        spec_path, out_path, feeds_path = (Path(folder) / n for n in ("spec.json", "result.json", "feeds.npz"))
        np.savez(feeds_path, **{k: np.asarray(v) for k, v in feeds.items()})
        spec = {"name": label, "path": str(art.path), "format": art.format, "engine": engine,
                "engine_options": dict(engine_options), "requests": requests, "feeds": str(feeds_path),
                "out": str(out_path)}
        try:
            spec_path.write_text(json.dumps(spec))
        except TypeError as exc:
            raise ConfigError(f"engine options for the memory child must be JSON values, got {engine_options}") \
                from exc
        kit_root = str(Path(__file__).resolve().parents[2])  # the child imports this same kit
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [kit_root, os.environ.get("PYTHONPATH")])))
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(spec_path)], env=env,
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise KitError(f"measuring the memory of {label} took more than {timeout_s:g} s") from exc
        if not out_path.exists():
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise KitError(f"the child process measuring {label} exited with code {proc.returncode} without a "
                           f"result" + (f": {lines[-1]}" if lines else ""))
        record = json.loads(out_path.read_text())
    if "error" in record:
        raise _error_from(record["error"])
    return MemoryResult(**record)


def memory_frame(models: Sequence[ModelLike], feeds: Mapping[str, np.ndarray], requests: int = 10,
                 **engine_options: Any):
    """One row per model (``MemoryResult``'s fields), each measured in its own child; a failure is a row with it."""
    import pandas as pd

    rows = []
    for model in models:
        art = as_artifact(model)
        try:
            rows.append(measure_memory(art, feeds, requests, **engine_options).to_record())
        except KitError as exc:
            rows.append({"name": art.name, "failure": first_line(exc)})
    return pd.DataFrame(rows)


def _main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        record: dict[str, Any] = _measure_here(spec)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent as data
        record = {"error": {"type": type(exc).__name__, "message": first_line(exc)}}
    Path(spec["out"]).write_text(json.dumps(record))
    return 0

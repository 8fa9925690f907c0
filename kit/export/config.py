"""What an export deploys: ``ExportConfig``, read from a ``best_config.json`` or given in code.

A notebook (or ``Tuner.export_best``) writes the configuration that served best; ``kit export``
turns it into a server's files. The field names are the kit's everywhere else
(``intra_op_num_threads``, ``inter_op_num_threads``, ``graph_optimization_level``,
``max_batch_size``, ``batch_timeout_micros``...). ``read_config`` takes either a flat JSON
object of these fields or the tuner's ``best_config.json`` (``{"config": {...}, "metrics":
{...}, ...}``, whose ``batch_size`` is the ``max_batch_size`` it measured). An unknown field
is a ``ConfigError``, never silently dropped: a config the export cannot honour is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kit.config import require_int
from kit.errors import ConfigError

GRAPH_LEVELS = ("disable", "basic", "extended", "all")
PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider")
# Keys of the tuner's best_config.json that describe the search, not the deployment: kept as provenance.
_PROVENANCE = ("trial", "objective", "study", "storage", "constraints")


@dataclass(frozen=True)
class ExportConfig:
    """How the exported model is served; ``None`` leaves a setting at the server's default.

    ``max_batch_size`` 0 means no batching (and, for Triton, no batch dimension stripped
    from the dims); > 1 turns on the server's batching with ``batch_timeout_micros``.
    ``input_names``, when given, must be exactly the model's inputs. ``metrics`` are the
    measured figures that chose this configuration and ``environment`` the machine they
    were measured on; both go into ``MANIFEST.json`` unchanged.
    """

    max_batch_size: int = 0
    batch_timeout_micros: int = 0
    allowed_batch_sizes: tuple[int, ...] = ()
    max_enqueued_batches: int = 10
    num_batch_threads: int = 1
    intra_op_num_threads: int | None = None
    inter_op_num_threads: int | None = None
    graph_optimization_level: str | None = None
    provider: str | None = None
    instance_count: int = 1
    input_names: tuple[str, ...] = ()
    version: int = 1
    labels: Mapping[str, int] = field(default_factory=dict)
    warmup_batch_sizes: tuple[int, ...] = (1,)
    grpc_port: int = 8500
    rest_port: int = 8501
    variant: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("allowed_batch_sizes", "input_names", "warmup_batch_sizes"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ConfigError(f"{name} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        require_int("max_batch_size", self.max_batch_size, 0)
        require_int("batch_timeout_micros", self.batch_timeout_micros, 0)
        require_int("max_enqueued_batches", self.max_enqueued_batches, 1)
        require_int("num_batch_threads", self.num_batch_threads, 1)
        require_int("instance_count", self.instance_count, 1)
        require_int("version", self.version, 0)
        require_int("intra_op_num_threads", self.intra_op_num_threads, 0, allow_none=True)
        require_int("inter_op_num_threads", self.inter_op_num_threads, 0, allow_none=True)
        for port in ("grpc_port", "rest_port"):
            value = getattr(self, port)
            if not isinstance(value, int) or not 1 <= value <= 65535:
                raise ConfigError(f"{port} must be an int in [1, 65535], got {value!r}")
        if self.graph_optimization_level is not None and self.graph_optimization_level not in GRAPH_LEVELS:
            raise ConfigError(f"graph_optimization_level must be one of {GRAPH_LEVELS}, "
                              f"got {self.graph_optimization_level!r}")
        if self.provider is not None and self.provider not in PROVIDERS:
            raise ConfigError(f"provider must be one of {PROVIDERS} for an export, got {self.provider!r}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if self.max_batch_size <= 1:
                raise ConfigError(f"allowed_batch_sizes {list(sizes)} need max_batch_size > 1, "
                                  f"got {self.max_batch_size}")
            if any(not isinstance(s, int) or s < 1 for s in sizes) or list(sizes) != sorted(set(sizes)) \
                    or sizes[-1] != self.max_batch_size:
                raise ConfigError(f"allowed_batch_sizes must increase strictly and end at max_batch_size "
                                  f"({self.max_batch_size}), got {list(sizes)}")
        if not self.warmup_batch_sizes or any(not isinstance(b, int) or b < 1 for b in self.warmup_batch_sizes):
            raise ConfigError(f"warmup_batch_sizes must be ints >= 1, got {list(self.warmup_batch_sizes)}")
        if self.max_batch_size and max(self.warmup_batch_sizes) > self.max_batch_size:
            raise ConfigError(f"warmup_batch_sizes {list(self.warmup_batch_sizes)} exceed max_batch_size "
                              f"{self.max_batch_size}")
        labels = dict(self.labels)
        for label, version in labels.items():
            if not isinstance(label, str) or not label.replace("_", "").replace("-", "").isalnum():
                raise ConfigError(f"label names must be words, got {label!r}")
            if version != self.version:
                raise ConfigError(f"label {label!r} points at version {version}, but the export writes only "
                                  f"version {self.version}")
        object.__setattr__(self, "labels", labels)

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1

    def batching_config(self):
        """The ``kit.serve.batching.BatchingConfig`` that ``batching_parameters.txt`` holds."""
        from kit.serve.batching import BatchingConfig

        return BatchingConfig(max_batch_size=self.max_batch_size, batch_timeout_micros=self.batch_timeout_micros,
                              max_enqueued_batches=self.max_enqueued_batches,
                              num_batch_threads=self.num_batch_threads,
                              allowed_batch_sizes=self.allowed_batch_sizes)

    @classmethod
    def from_batching(cls, batching: Any, **fields: Any) -> ExportConfig:
        """The config that deploys a ``kit.serve.batching.BatchingConfig`` (``batching_config``'s inverse),
        with any other ``fields`` (``metrics=``, ``intra_op_num_threads=``...)."""
        return cls(max_batch_size=batching.max_batch_size, batch_timeout_micros=batching.batch_timeout_micros,
                   max_enqueued_batches=batching.max_enqueued_batches, num_batch_threads=batching.num_batch_threads,
                   allowed_batch_sizes=batching.allowed_batch_sizes, **fields)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("allowed_batch_sizes", "input_names", "warmup_batch_sizes"):
            record[key] = list(record[key])
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportConfig:
        """From a flat mapping of fields or the tuner's ``best_config.json`` record."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an export config is a JSON object, got {type(data).__name__}")
        data = dict(data)
        if isinstance(data.get("config"), Mapping):  # Tuner.export_best's record
            trial = dict(data.pop("config"))
            metrics = dict(data.pop("metrics", {}) or {})
            source = {k: data.pop(k) for k in _PROVENANCE if k in data}
            if "batch_size" in trial:
                trial["max_batch_size"] = trial.pop("batch_size")
            if trial.get("max_batch_size") == 1 and not trial.get("batch_timeout_micros"):
                trial["max_batch_size"] = 0  # the tuner's batch 1 is "no batcher"
            data = {**trial, **data, "metrics": {**metrics, **dict(data.get("metrics", {}) or {})},
                    "source": {**source, **dict(data.get("source", {}) or {})}}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown export config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def read_config(path: str | os.PathLike[str]) -> ExportConfig:
    """``ExportConfig`` from a ``best_config.json`` (one-line ``ConfigError`` when it is not one)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read export config {p}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"export config {p} is not JSON: {exc}") from exc
    return ExportConfig.from_dict(data)


def as_config(config: ExportConfig | Mapping[str, Any] | str | os.PathLike[str] | None) -> ExportConfig:
    if config is None:
        return ExportConfig()
    if isinstance(config, ExportConfig):
        return config
    if isinstance(config, Mapping):
        return ExportConfig.from_dict(config)
    return read_config(config)

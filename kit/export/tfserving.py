"""``kit export --target tfserving``: the folder ``tensorflow_model_server`` starts from.

    OUT/NAME/<version>/                 the SavedModel, with assets.extra/tf_serving_warmup_requests
    OUT/models.config                   model_config_list: base_path, platform, version policy, labels
    OUT/batching_parameters.txt         when the config batches (max_batch_size > 1)
    OUT/monitoring.config               Prometheus metrics at /monitoring/prometheus/metrics
    OUT/serve.sh                        the exact tensorflow_model_server command line
    OUT/MANIFEST.json                   sha256 of every file, lineage, figures, environment

Every config file is written with TF Serving's own protos (``tensorflow_serving.config``) or,
for the batching parameters, the message ``kit.tfserving.batching_parameters`` declares field
for field, so what the kit writes the server parses. ``kit serve --model-config-file
OUT/models.config`` serves the same folder in-process.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError
from kit.export.bundle import (
    Bundle,
    check_model_fits,
    check_out,
    model_specs,
    resolve_model,
    staged,
    warmup_requests,
    write_manifest,
)
from kit.export.config import ExportConfig, as_config

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def check_expressible(config: ExportConfig) -> None:
    """Refuse what TF Serving has no setting for (a silently dropped setting is a wrong deployment)."""
    if config.graph_optimization_level is not None:
        raise ConfigError(f"tfserving cannot express graph_optimization_level={config.graph_optimization_level!r} "
                          f"(an ONNX Runtime setting); drop it, or export an ONNX model with --target triton")
    if config.provider not in (None, "CPUExecutionProvider"):
        raise ConfigError(f"tfserving cannot express provider={config.provider!r}: TF Serving's device comes from "
                          f"its build (the -gpu image); drop provider")
    if config.instance_count != 1:
        raise ConfigError(f"tfserving cannot express instance_count={config.instance_count} (TF Serving runs one "
                          f"session per version); use --target triton")


def _refuse_format(art: ModelArtifact) -> None:
    if art.format == "savedmodel":
        return
    if art.format == "onnx":
        raise ConfigError(f"TF Serving cannot load ONNX ({art.path}); export it with --target triton "
                          f"(backend onnxruntime)")
    if art.format == "tflite":
        raise ConfigError(f"TF Serving cannot load a TFLite model ({art.path}); export its SavedModel parent, "
                          f"or serve the .tflite with kit serve")
    raise ConfigError(f"tfserving exports a SavedModel, got a {art.format} model ({art.path}); "
                      f"export a .keras model first with model.export(dir)")


class _Entry:
    """One ``models.config`` entry (what ``modelconfig.models_config_text`` takes)."""

    def __init__(self, name: str, base_path: Path, version: int, labels: Mapping[str, int]) -> None:
        self.name, self.base_path, self.version, self.labels = name, base_path, version, labels

    def model_config(self):
        from kit.tfserving.modelconfig import VersionPolicy, import_config_pb2

        pb2 = import_config_pb2()
        config = pb2.ModelConfig(name=self.name, base_path=str(self.base_path), model_platform="tensorflow")
        VersionPolicy.specific(self.version).to_proto(config.model_version_policy)
        for label, version in sorted(self.labels.items()):
            config.version_labels[label] = version
        return config


def monitoring_config_text() -> str:
    """``MonitoringConfig`` text proto turning on Prometheus metrics (message declared as TF Serving does)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

    pool = descriptor_pool.DescriptorPool()
    fdp = descriptor_pb2.FileDescriptorProto(name="kit/tensorflow_serving/monitoring_config.proto",
                                             package="tensorflow.serving", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    prom = fdp.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    mon = fdp.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                  type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
    message = cls()
    message.prometheus_config.enable = True
    message.prometheus_config.path = PROMETHEUS_PATH
    return text_format.MessageToString(message)


def serve_command(config: ExportConfig, has_labels: bool) -> list[str]:
    """``tensorflow_model_server`` arguments the configuration implies (paths relative to ``$HERE``)."""
    args = ["tensorflow_model_server", f"--port={config.grpc_port}", f"--rest_api_port={config.rest_port}",
            '--model_config_file="$HERE/models.config"', '--monitoring_config_file="$HERE/monitoring.config"',
            "--enable_model_warmup=true"]
    if config.batching:
        args += ["--enable_batching=true", '--batching_parameters_file="$HERE/batching_parameters.txt"']
    if config.intra_op_num_threads is not None:
        args.append(f"--tensorflow_intra_op_parallelism={config.intra_op_num_threads}")
    if config.inter_op_num_threads is not None:
        args.append(f"--tensorflow_inter_op_parallelism={config.inter_op_num_threads}")
    if has_labels:  # labels in the first models.config name versions not yet loaded
        args.append("--allow_version_labels_for_unavailable_models=true")
    return args


def _serve_sh(config: ExportConfig, has_labels: bool, name: str) -> str:
    args = serve_command(config, has_labels)
    body = " \\\n    ".join(args)
    return (f"#!/bin/sh\n# Written by kit export: serves model {shlex.quote(name)} with TensorFlow Serving.\n"
            f"# The same folder in-process: kit serve --model-config-file \"$HERE/models.config\"\n"
            f"# (models.config holds absolute base paths: re-export after moving this folder.)\n"
            f"set -e\nHERE=\"$(cd \"$(dirname \"$0\")\" && pwd)\"\nexec {body} \\\n    \"$@\"\n")


def export_tfserving(model: ModelArtifact | str | os.PathLike[str], out: str | os.PathLike[str], name: str,
                     config: ExportConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
                     force: bool = False, data: Mapping[str, Any] | None = None) -> Bundle:
    """Write a TF Serving bundle of ``model`` (a SavedModel) under ``out``; see the module docstring.

    The warm-up file holds one request per ``config.warmup_batch_sizes``: the first rows of
    ``data`` (arrays named after the inputs: the user's inputs), or synthetic ones. Raises
    ``ConfigError`` before writing anything for a model or config TF Serving cannot take; a
    failure later leaves ``out`` as it was.
    """
    from kit.tfserving import batching_parameters
    from kit.tfserving.modelconfig import models_config_text
    from kit.tfserving.warmup import write_tfserving_warmup

    cfg = as_config(config)
    _check_name(name)
    out = check_out(Path(out), force)
    check_expressible(cfg)
    art = resolve_model(model, "savedmodel")
    _refuse_format(art)
    inputs, outputs = model_specs(art)
    check_model_fits(cfg, inputs, outputs)
    labels = cfg.labels or {"stable": cfg.version}
    requests = warmup_requests(inputs, cfg, data)
    with staged(out) as root:
        version_dir = root / name / str(cfg.version)
        shutil.copytree(art.path, version_dir)
        write_tfserving_warmup(version_dir, requests, model_name=name)
        entry = _Entry(name, out / name, cfg.version, labels)
        (root / "models.config").write_text(models_config_text([entry]))
        if cfg.batching:
            batching_parameters.write(cfg.batching_config(), root / "batching_parameters.txt")
        (root / "monitoring.config").write_text(monitoring_config_text())
        script = root / "serve.sh"
        script.write_text(_serve_sh(cfg, bool(labels), name))
        script.chmod(0o755)
        files = write_manifest(root, target="tfserving", name=name, art=art, config=cfg, final=out)
    return Bundle(out, "tfserving", name, files)


def _check_name(name: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ConfigError(f"--name must be a word (letters, digits, '_', '-', '.'), got {name!r}")

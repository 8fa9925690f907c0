"""``kit export --target triton``: a Triton Inference Server model repository.

    OUT/NAME/config.pbtxt               backend, max_batch_size, inputs/outputs, dynamic_batching,
                                        instance_group, thread and graph-level parameters, model_warmup
    OUT/NAME/<version>/model.onnx       (with its external-data files) or model.savedmodel/
    OUT/MANIFEST.json                   sha256 of every file, lineage, figures, environment

``config.pbtxt`` is built as Triton's own ``inference.ModelConfig`` message (``tritonclient``
ships it as ``tritonclient.grpc.model_config_pb2``) and written with protobuf's ``text_format``.
Start a server with ``tritonserver --model-repository=OUT``.

What the kit's fields become: ``max_batch_size`` as is (dims then leave the batch axis out);
``batch_timeout_micros`` -> ``dynamic_batching.max_queue_delay_microseconds``, with
``allowed_batch_sizes`` (or ``max_batch_size``) as preferred sizes; ``intra_op_num_threads`` /
``inter_op_num_threads`` -> the onnxruntime backend's ``intra_op_thread_count`` /
``inter_op_thread_count`` parameters; ``graph_optimization_level`` -> ``optimization.graph.level``
as the onnxruntime backend reads it (-1 basic, 1 extended, 2 disable, absent: all);
``provider`` -> ``instance_group`` kind (CPU or GPU) with ``instance_count``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError, MissingDependencyError
from kit.export.bundle import (
    Bundle,
    check_model_fits,
    check_out,
    copy_onnx,
    model_specs,
    resolve_model,
    staged,
    warmup_requests,
    write_manifest,
)
from kit.export.config import ExportConfig, as_config
from kit.specs import TensorSpec

GRAPH_LEVEL = {"basic": -1, "extended": 1, "disable": 2}  # "all" is the backend's default: no level written
_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int8": "TYPE_INT8",
          "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "uint8": "TYPE_UINT8",
          "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64", "bool": "TYPE_BOOL",
          "object": "TYPE_STRING", "bytes": "TYPE_STRING", "str": "TYPE_STRING"}


def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise MissingDependencyError("tritonclient", "Writing a Triton config.pbtxt") from exc
    return model_config_pb2


def _data_type(spec: TensorSpec) -> str:
    dtype = np.dtype(spec.dtype)
    kind = "bytes" if dtype.kind in "SUO" else dtype.name
    if kind not in _TYPES:
        raise ConfigError(f"Triton has no data type for '{spec.name}' ({dtype.name})")
    return _TYPES[kind]


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    shape = spec.shape[1:] if batched else spec.shape
    return [-1 if d is None or not isinstance(d, int) else int(d) for d in shape]


def check_expressible(config: ExportConfig, backend: str) -> None:
    """Refuse what this Triton backend has no per-model setting for."""
    if config.labels:
        raise ConfigError(f"triton cannot express version labels {dict(config.labels)} (Triton has none); "
                          f"drop labels, or export with --target tfserving")
    if backend == "tensorflow":
        for name in ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level"):
            value = getattr(config, name)
            if value is not None:
                raise ConfigError(f"triton's tensorflow backend cannot express {name}={value!r} per model "
                                  f"(TF threads are a server-wide --backend-config); drop it, or export "
                                  f"with --target tfserving")


def config_message(name: str, backend: str, cfg: ExportConfig, inputs: tuple[TensorSpec, ...],
                   outputs: tuple[TensorSpec, ...], data: Mapping[str, Any] | None = None):
    """The ``inference.ModelConfig`` message and the warm-up data files (``warmup/<file>`` -> bytes).

    Without ``data`` the warm-up requests are Triton's ``random_data``; with it, each input's
    first rows are written raw (row-major), as ``input_data_file`` reads them.
    """
    pb2 = model_config_pb2()
    m = pb2.ModelConfig(name=name, backend=backend, max_batch_size=cfg.max_batch_size)
    if backend == "tensorflow":
        m.platform = "tensorflow_savedmodel"
    m.version_policy.specific.versions.append(cfg.version)
    batched = cfg.max_batch_size > 0
    for spec in inputs:
        m.input.add(name=spec.name, data_type=pb2.DataType.Value(_data_type(spec)), dims=_dims(spec, batched))
    for spec in outputs:
        m.output.add(name=spec.name, data_type=pb2.DataType.Value(_data_type(spec)), dims=_dims(spec, batched))
    if cfg.batching:
        m.dynamic_batching.preferred_batch_size.extend(cfg.allowed_batch_sizes or (cfg.max_batch_size,))
        m.dynamic_batching.max_queue_delay_microseconds = cfg.batch_timeout_micros
    gpu = cfg.provider == "CUDAExecutionProvider"
    m.instance_group.add(count=cfg.instance_count, kind=pb2.ModelInstanceGroup.KIND_GPU if gpu
                         else pb2.ModelInstanceGroup.KIND_CPU)
    if backend == "onnxruntime":
        if cfg.intra_op_num_threads is not None:
            m.parameters["intra_op_thread_count"].string_value = str(cfg.intra_op_num_threads)
        if cfg.inter_op_num_threads is not None:
            m.parameters["inter_op_thread_count"].string_value = str(cfg.inter_op_num_threads)
        if cfg.graph_optimization_level in GRAPH_LEVEL:
            m.optimization.graph.level = GRAPH_LEVEL[cfg.graph_optimization_level]
    files: dict[str, bytes] = {}
    for batch, feeds in zip(cfg.warmup_batch_sizes, warmup_requests(inputs, cfg, data)):
        warm = m.model_warmup.add(name=f"batch_{batch}", batch_size=batch if batched else 1, count=1)
        for spec in inputs:
            array = np.ascontiguousarray(feeds[spec.name])
            shape = array.shape[1:] if batched else array.shape
            entry = warm.inputs[spec.name]
            entry.data_type = pb2.DataType.Value(_data_type(spec))
            entry.dims.extend(int(d) for d in shape)
            if data is None:
                entry.random_data = True
            else:
                filename = f"{spec.name.replace('/', '_')}_batch{batch}"
                files[filename] = array.tobytes()
                entry.input_data_file = filename
    return m, files


def config_text(message: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(message)


def export_triton(model: ModelArtifact | str | os.PathLike[str], out: str | os.PathLike[str], name: str,
                  config: ExportConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
                  force: bool = False, data: Mapping[str, Any] | None = None) -> Bundle:
    """Write a Triton model repository holding ``model`` (ONNX or SavedModel) as ``name``;
    ``data`` (arrays named after the inputs) makes the warm-up requests, else Triton's random data."""
    from kit.export.tfserving import _check_name

    cfg = as_config(config)
    _check_name(name)
    out = check_out(Path(out), force)
    art = resolve_model(model, "onnx")
    if art.format not in ("onnx", "savedmodel"):
        raise ConfigError(f"triton exports an ONNX model or a SavedModel, got a {art.format} model ({art.path})")
    backend = "onnxruntime" if art.format == "onnx" else "tensorflow"
    check_expressible(cfg, backend)
    inputs, outputs = model_specs(art)
    check_model_fits(cfg, inputs, outputs)
    message, warm_files = config_message(name, backend, cfg, inputs, outputs, data)
    with staged(out) as root:
        version_dir = root / name / str(cfg.version)
        if art.format == "onnx":
            copy_onnx(art.path, version_dir)
        else:
            shutil.copytree(art.path, version_dir / "model.savedmodel")
        (root / name / "config.pbtxt").write_text(config_text(message))
        for filename, raw in warm_files.items():  # Triton reads input_data_file from NAME/warmup/
            (root / name / "warmup").mkdir(exist_ok=True)
            (root / name / "warmup" / filename).write_bytes(raw)
        files = write_manifest(root, target="triton", name=name, art=art, config=cfg, final=out)
    return Bundle(out, "triton", name, files)

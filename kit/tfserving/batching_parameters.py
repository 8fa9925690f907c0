"""Write (and read back) TensorFlow Serving's ``batching_parameters.txt`` from a ``BatchingConfig``.

``tensorflow_model_server --enable_batching --batching_parameters_file=...`` reads a text
proto of ``tensorflow.serving.BatchingParameters``. tensorflow-serving-api (2.21) does not
ship that message, so it is declared here with protobuf's descriptor API, field for field
as TF Serving's ``session_bundle_config.proto`` defines it:

    google.protobuf.Int64Value  max_batch_size = 1;
    google.protobuf.Int64Value  batch_timeout_micros = 2;
    google.protobuf.Int64Value  max_enqueued_batches = 3;
    google.protobuf.Int64Value  num_batch_threads = 4;
    google.protobuf.StringValue thread_pool_name = 5;
    repeated int64              allowed_batch_sizes = 6;
    bool                        pad_variable_length_inputs = 7;

and protobuf's ``text_format`` writes and parses it, so what the kit measured is what the
server will be told.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from kit.artifacts import atomic_output
from kit.errors import ConfigError
from kit.serve.batching import BatchingConfig

_PACKAGE = "tensorflow.serving"
_INT64 = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")


@functools.lru_cache(maxsize=1)
def batching_parameters_class() -> type:
    """The ``tensorflow.serving.BatchingParameters`` message class, built once in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    fdp = descriptor_pb2.FileDescriptorProto(name="kit/tensorflow_serving/batching_parameters.proto",
                                             package=_PACKAGE, syntax="proto3",
                                             dependency=["google/protobuf/wrappers.proto"])
    msg = fdp.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    for number, name in enumerate(_INT64, start=1):
        msg.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                      type_name=".google.protobuf.Int64Value")
    msg.field.add(name="thread_pool_name", number=5, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                  type_name=".google.protobuf.StringValue")
    msg.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    msg.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.BatchingParameters"))


def to_proto(config: BatchingConfig):
    """The ``BatchingParameters`` message for ``config`` (shutdown settings are the kit's own, not TF's)."""
    message = batching_parameters_class()()
    for name in _INT64:
        getattr(message, name).value = int(getattr(config, name))
    message.thread_pool_name.value = config.thread_pool_name
    message.allowed_batch_sizes.extend(config.allowed_batch_sizes)
    message.pad_variable_length_inputs = config.pad_variable_length_inputs
    return message


def to_text(config: BatchingConfig) -> str:
    """``config`` as the text proto TF Serving's ``--batching_parameters_file`` reads."""
    from google.protobuf import text_format

    return text_format.MessageToString(to_proto(config))


def parse_text(text: str, **kit_options: Any) -> BatchingConfig:
    """A ``BatchingConfig`` from a ``batching_parameters.txt`` text; unknown fields raise ``ConfigError``.

    Fields the file leaves out take the kit's defaults; ``kit_options`` set the kit-only
    fields (``drain_on_close``, ``close_timeout_s``).
    """
    from google.protobuf import text_format

    message = batching_parameters_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(f"not a valid TF Serving batching_parameters text proto: {exc}") from exc
    values: dict[str, Any] = {name: getattr(message, name).value for name in _INT64 if message.HasField(name)}
    if message.HasField("thread_pool_name"):
        values["thread_pool_name"] = message.thread_pool_name.value
    values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = message.pad_variable_length_inputs
    return BatchingConfig(**values, **kit_options)


def write(config: BatchingConfig, path: str | os.PathLike[str]) -> Path:
    """Write ``batching_parameters.txt`` atomically (no half-written file a server could read)."""
    target = Path(path)
    with atomic_output(target) as tmp:
        tmp.write_text(to_text(config))
    return target


def read(path: str | os.PathLike[str], **kit_options: Any) -> BatchingConfig:
    """Read a ``batching_parameters.txt`` back into a ``BatchingConfig``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"batching parameters file not found: {p}")
    return parse_text(p.read_text(), **kit_options)

"""One reader of SavedModel signatures: names, dtypes and shapes straight from ``saved_model.pb``.

The TensorFlow engine, TF Serving's warm-up files and the TFLite quantizer all need a
signature's inputs; three readers (one parsing the proto, two loading the whole model) had
begun to disagree on order and on unknown dimensions. This module owns that reading, as
``tfserving_wire`` owns the bytes on the wire. It parses the proto only (no graph is loaded),
so asking a 500 MB SavedModel for its inputs costs milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kit.errors import ModelLoadError
from kit.specs import TensorSpec

SERVE_TAG = "serve"


def _meta_graph(saved_model_dir: Path, tag: str):
    from kit._quiet import import_tensorflow

    import_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    pb = saved_model_dir / "saved_model.pb"
    if not pb.is_file():
        raise ModelLoadError(f"{saved_model_dir} is not a SavedModel directory (no saved_model.pb)")
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except Exception as exc:  # protobuf's DecodeError, whose class path varies between versions
        raise ModelLoadError(f"cannot parse {pb}: {exc}") from exc
    meta = next((m for m in saved.meta_graphs if tag in m.meta_info_def.tags), None)
    if meta is None:
        raise ModelLoadError(f"SavedModel {saved_model_dir} has no meta graph tagged {tag!r}")
    return meta


def _specs(tensors) -> tuple[TensorSpec, ...]:
    import tensorflow as tf

    out = []
    for key in sorted(tensors):
        info = tensors[key]
        dtype = np.dtype(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype)
        shape = (None,) if info.tensor_shape.unknown_rank else tuple(
            None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
        out.append(TensorSpec(key, dtype, shape))
    return tuple(out)


def read_signature(saved_model_dir: str | os.PathLike[str], signature_name: str = "serving_default",
                   tag: str = SERVE_TAG) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """``(inputs, outputs)`` of one signature, each sorted by key; an unknown rank is ``(None,)``."""
    meta = _meta_graph(Path(saved_model_dir), tag)
    if signature_name not in meta.signature_def:
        raise ModelLoadError(f"SavedModel {saved_model_dir} has no signature {signature_name!r} under tag {tag!r}; "
                             f"available signatures: {sorted(meta.signature_def) or 'none'}")
    signature = meta.signature_def[signature_name]
    return _specs(signature.inputs), _specs(signature.outputs)

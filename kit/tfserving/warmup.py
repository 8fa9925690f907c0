"""TensorFlow Serving's warm-up file: ``assets.extra/tf_serving_warmup_requests``.

TF Serving runs the requests of that file right after loading a version:
``PredictionLog`` records in TFRecord format, at most 1000 of them. ``write_tfserving_warmup``
makes one from sample feeds with the ``tensorflow_serving.apis`` protos, and
``read_tfserving_warmup`` parses it back and checks every request against the SavedModel's
signature (and, optionally, runs it). Warming an in-process engine is ``kit.loading.warmup``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kit.artifacts import atomic_output
from kit.engines.base import Feeds
from kit.engines.savedmodel_signature import read_signature
from kit.errors import ConfigError, InputError, MissingDependencyError, ModelLoadError

log = logging.getLogger(__name__)

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many records


def _tf():
    from kit._quiet import import_tensorflow

    try:
        tf = import_tensorflow()
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as exc:
        raise MissingDependencyError("tensorflow-serving-api", "Writing TF Serving warm-up files") from exc
    return tf, predict_pb2, prediction_log_pb2


def signature_inputs(saved_model_dir: str | os.PathLike[str],
                     signature_name: str = "serving_default") -> dict[str, tuple[np.dtype, tuple[int | None, ...]]]:
    """Input keys of a SavedModel signature with dtype and shape (None: any size)."""
    inputs, _ = read_signature(saved_model_dir, signature_name)
    return {spec.name: (spec.dtype, spec.shape) for spec in inputs}


def _check_request(feeds: Mapping[str, np.ndarray], inputs: Mapping[str, tuple[np.dtype, tuple]], where: str) -> None:
    expected = "; ".join(f"{k}: {d.name}{list(s)}" for k, (d, s) in inputs.items())
    if set(feeds) != set(inputs):
        raise InputError(f"{where} has inputs {sorted(feeds)}; the signature expects {expected}")
    for key, (dtype, shape) in inputs.items():
        array = np.asarray(feeds[key])
        if array.dtype != dtype:
            raise InputError(f"{where} input '{key}' has dtype {array.dtype.name}; the signature expects {expected}")
        if shape != (None,) and (array.ndim != len(shape) or
                                 any(s is not None and s != a for s, a in zip(shape, array.shape))):
            raise InputError(f"{where} input '{key}' has shape {array.shape}; the signature expects {expected}")


def write_tfserving_warmup(saved_model_dir: str | os.PathLike[str], requests: Sequence[Feeds],
                           model_name: str = "model", signature_name: str = "serving_default") -> Path:
    """Write ``assets.extra/tf_serving_warmup_requests`` into a SavedModel (version) directory.

    Every request is checked against the signature first, the file is written atomically,
    then parsed back and checked again, so a file that exists is one TF Serving accepts.
    """
    if not 1 <= len(requests) <= MAX_WARMUP_RECORDS:
        raise ConfigError(f"a TF Serving warm-up file holds 1 to {MAX_WARMUP_RECORDS} requests, got {len(requests)}")
    tf, predict_pb2, prediction_log_pb2 = _tf()
    inputs = signature_inputs(saved_model_dir, signature_name)
    for i, feeds in enumerate(requests):
        _check_request(feeds, inputs, f"warm-up request {i}")
    target = Path(saved_model_dir) / WARMUP_DIR / WARMUP_FILE
    with atomic_output(target) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for feeds in requests:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = model_name
                request.model_spec.signature_name = signature_name
                for key, value in feeds.items():
                    request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
                record = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(record.SerializeToString())
    read_tfserving_warmup(saved_model_dir, signature_name=signature_name)
    log.info("wrote %d warm-up requests to %s", len(requests), target)
    return target


def read_tfserving_warmup(saved_model_dir: str | os.PathLike[str], signature_name: str | None = None,
                          run: bool = False) -> list[Any]:
    """Parse the warm-up file back into ``PredictRequest`` protos, each checked against its signature.

    With ``run=True`` each request is also run through the SavedModel's signature with
    TensorFlow, proving the model accepts it. Raises ``ModelLoadError`` for an unreadable
    file or a record that is not a predict log, ``InputError`` for a request that does
    not fit the signature.
    """
    tf, _, prediction_log_pb2 = _tf()
    path = Path(saved_model_dir) / WARMUP_DIR / WARMUP_FILE
    if not path.is_file():
        raise ModelLoadError(f"no warm-up file at {path}")
    try:
        records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    except tf.errors.OpError as exc:
        raise ModelLoadError(f"warm-up file {path} is not a readable TFRecord file: {exc.message}") from exc
    if not 1 <= len(records) <= MAX_WARMUP_RECORDS:
        raise ModelLoadError(f"warm-up file {path} holds {len(records)} records; TF Serving takes 1 to "
                             f"{MAX_WARMUP_RECORDS}")
    requests, signatures = [], {}
    loaded = tf.saved_model.load(str(saved_model_dir)) if run else None
    for i, raw in enumerate(records):
        record = prediction_log_pb2.PredictionLog()
        try:
            record.ParseFromString(raw)
        except Exception as exc:  # protobuf's DecodeError
            raise ModelLoadError(f"record {i} of {path} is not a PredictionLog: {exc}") from exc
        if record.WhichOneof("log_type") != "predict_log":
            raise ModelLoadError(f"record {i} of {path} is a {record.WhichOneof('log_type')!r} log; "
                                 f"expected predict_log")
        request = record.predict_log.request
        sig = request.model_spec.signature_name or "serving_default"
        if signature_name is not None and sig != signature_name:
            raise InputError(f"record {i} targets signature {sig!r}, expected {signature_name!r}")
        if sig not in signatures:
            signatures[sig] = signature_inputs(saved_model_dir, sig)
        feeds = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        _check_request(feeds, signatures[sig], f"record {i}")
        if loaded is not None:
            loaded.signatures[sig](**{k: tf.constant(v) for k, v in feeds.items()})
        requests.append(request)
    return requests

"""TensorFlow Serving's wire formats, both ways, shared by the client engine and ``kit serve``.

One module owns every byte that crosses the wire so that the client (``kit.engines.tfserving``)
and the server (``kit.tfserving.server``) cannot drift apart, and both match TF Serving itself:

- ``TensorProto`` <-> numpy with numpy only (the same layout as ``tf.make_tensor_proto`` /
  ``tf.make_ndarray``: ``tensor_content`` little-endian bytes, or the typed ``*_val`` fields,
  a short list padded with its last value);
- REST JSON tensors (row ``instances``/``predictions`` and columnar ``inputs``/``outputs``,
  ``{"b64": ...}`` for binary strings), as ``api_rest.md`` documents them;
- a ``SignatureDef`` in its JSON form (what TF Serving's REST metadata returns and what
  ``json_format`` gives for the gRPC one) <-> kit ``TensorSpec`` s;
- gRPC status codes <-> HTTP statuses (TF Serving's ``ToHTTPStatusCode``) <-> kit errors.

The REST half needs nothing beyond numpy. The gRPC half needs ``tensorflow-serving-api``,
whose generated modules import ``tensorflow.core.framework`` and with it all of TensorFlow
(about 4 s, once per process); ``grpc_apis`` imports them quietly, on first use.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from kit.errors import (
    CircuitOpen,
    Closed,
    DeadlineExceeded,
    InferenceError,
    InputError,
    KitError,
    MissingDependencyError,
    ModelLoadError,
    Overloaded,
)
from kit.specs import TensorSpec

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"

DTYPES: dict[str, np.dtype] = {name: np.dtype(dt) for name, dt in {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32, "DT_UINT8": np.uint8,
    "DT_INT16": np.int16, "DT_INT8": np.int8, "DT_STRING": np.object_, "DT_COMPLEX64": np.complex64,
    "DT_INT64": np.int64, "DT_BOOL": np.bool_, "DT_UINT16": np.uint16, "DT_COMPLEX128": np.complex128,
    "DT_HALF": np.float16, "DT_UINT32": np.uint32, "DT_UINT64": np.uint64}.items()}
"""TensorFlow ``DataType`` names (types.proto) and the numpy dtype each one carries."""
_NAMES = {dt: name for name, dt in DTYPES.items()}

_VALUE_FIELD = {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT32": "int_val",
                "DT_INT16": "int_val", "DT_INT8": "int_val", "DT_UINT8": "int_val", "DT_UINT16": "int_val",
                "DT_INT64": "int64_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val",
                "DT_BOOL": "bool_val", "DT_STRING": "string_val", "DT_HALF": "half_val",
                "DT_COMPLEX64": "scomplex_val", "DT_COMPLEX128": "dcomplex_val"}
"""Which repeated field of ``TensorProto`` holds a dtype's values when ``tensor_content`` is empty."""


def dtype_name(dtype: Any) -> str:
    """The ``DT_*`` name of a numpy dtype (strings and bytes are ``DT_STRING``)."""
    dt = np.dtype(dtype)
    if dt.kind in "OSU":
        return "DT_STRING"
    try:
        return _NAMES[dt.newbyteorder("=")]
    except KeyError:
        raise InputError(f"dtype {dt} has no TensorFlow Serving equivalent; supported: "
                         f"{sorted(str(d) for d in _NAMES)}") from None


def numpy_dtype(name: str) -> np.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise InputError(f"TensorFlow dtype {name} is not supported by kit; supported: {sorted(DTYPES)}") from None


# --------------------------------------------------------------------------- gRPC protos

_APIS: SimpleNamespace | None = None


def grpc_apis() -> SimpleNamespace:
    """TF Serving's generated protos and gRPC stubs, imported once and quietly."""
    global _APIS
    if _APIS is None:
        purpose = ("TensorFlow Serving's gRPC protocol (its protos come with tensorflow-serving-api, which "
                   "needs TensorFlow; an http:// URL uses REST, which needs neither)")
        try:
            import grpc
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError("grpcio", purpose) from exc
        from kit._quiet import import_tensorflow, silenced_stderr

        try:
            import_tensorflow()  # the protos live in the tensorflow package; load it without its log noise
            with silenced_stderr():
                from google.protobuf import json_format
                from tensorflow.core.framework import tensor_pb2, types_pb2
                from tensorflow_serving.apis import (
                    get_model_metadata_pb2,
                    get_model_status_pb2,
                    model_service_pb2_grpc,
                    predict_pb2,
                    prediction_service_pb2_grpc,
                )
        except ImportError as exc:
            raise MissingDependencyError("tensorflow-serving-api", purpose) from exc
        _APIS = SimpleNamespace(grpc=grpc, json_format=json_format, tensor_pb2=tensor_pb2, types_pb2=types_pb2,
                                predict_pb2=predict_pb2, get_model_metadata_pb2=get_model_metadata_pb2,
                                get_model_status_pb2=get_model_status_pb2,
                                prediction_service_pb2_grpc=prediction_service_pb2_grpc,
                                model_service_pb2_grpc=model_service_pb2_grpc)
    return _APIS


def fill_tensor_proto(proto: Any, value: Any) -> Any:
    """Write ``value`` into ``proto`` (a ``TensorProto``) as ``tf.make_tensor_proto`` would.

    Numbers and booleans go to ``tensor_content`` (little-endian bytes, no per-element
    boxing); strings to ``string_val`` (``str`` encoded as UTF-8).
    """
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    name = dtype_name(array.dtype)
    proto.dtype = grpc_apis().types_pb2.DataType.Value(name)
    for size in array.shape:
        proto.tensor_shape.dim.add().size = int(size)
    if name == "DT_STRING":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel())
    else:
        proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto


def make_tensor_proto(value: Any) -> Any:
    return fill_tensor_proto(grpc_apis().tensor_pb2.TensorProto(), value)


def to_ndarray(proto: Any) -> np.ndarray:
    """Decode a ``TensorProto`` as ``tf.make_ndarray`` does, into a writable array."""
    name = grpc_apis().types_pb2.DataType.Name(proto.dtype)
    dtype = numpy_dtype(name)
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    count = math.prod(shape)
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<"))
        if flat.size != count:
            raise InputError(f"tensor_content holds {flat.size} {name} values but the shape {list(shape)} "
                             f"needs {count}")
        return flat.astype(dtype).reshape(shape)
    values = getattr(proto, _VALUE_FIELD[name])
    if name == "DT_STRING":
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif name == "DT_HALF":
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    elif name in ("DT_COMPLEX64", "DT_COMPLEX128"):
        flat = np.asarray(values, dtype=np.float32 if name == "DT_COMPLEX64" else np.float64).view(dtype)
    else:
        flat = np.asarray(values, dtype=dtype)
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 0:
        return np.zeros(shape, dtype=dtype) if name != "DT_STRING" else np.full(shape, b"", dtype=object)
    if flat.size < count:  # TF pads a short list with its last value (a scalar fill is one value)
        return np.concatenate([flat, np.repeat(flat[-1:], count - flat.size)]).reshape(shape)
    raise InputError(f"TensorProto holds {flat.size} {name} values but its shape {list(shape)} needs {count}")


# --------------------------------------------------------------------------- REST JSON tensors

def json_tensor(array: np.ndarray, name: str = "") -> Any:
    """An array as TF Serving's REST API writes it: nested lists; ``*_bytes`` strings as ``{"b64": ...}``."""
    if array.dtype.kind not in "OSU":
        if array.dtype.kind == "c":
            raise InputError(f"'{name}': complex tensors have no JSON encoding in TF Serving's REST API")
        return array.tolist()
    binary = name.endswith("_bytes")

    def encode(v: Any) -> Any:
        if isinstance(v, bytes):
            if binary:
                return {"b64": base64.b64encode(v).decode("ascii")}
            return v.decode("utf-8")
        return str(v)

    return np.frompyfunc(encode, 1, 1)(array).tolist() if array.ndim else encode(array.item())


def _decode_b64(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise InputError(f"a JSON object inside a tensor must be {{\"b64\": ...}}, got keys {sorted(value)}")
        return base64.b64decode(value["b64"])
    return value.encode("utf-8") if isinstance(value, str) else value


def from_json(value: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """A JSON tensor (nested lists) as an array of ``dtype``; ragged or mistyped values are ``InputError``."""
    try:
        if dtype.kind == "O":
            decoded = _decode_b64(value)
            array = np.empty(np.shape(decoded), dtype=object)  # keep bytes objects, no fixed-width 'S'
            array[...] = decoded
            return array
        if isinstance(value, dict):
            raise TypeError("a JSON object is not a number")
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"input '{name}' cannot be read as a {dtype.name} tensor from JSON: {exc}") from None


def rows_to_arrays(instances: Any, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Decode a row-format (``instances``) request: a list of values or of {input: value} objects."""
    if not isinstance(instances, list):
        raise InputError("'instances' must be a JSON list (one entry per row)")
    names = [s.name for s in specs]
    if instances and all(isinstance(row, dict) and set(row) != {"b64"} for row in instances):
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for i, row in enumerate(instances):
            if set(row) != set(names):
                raise InputError(f"instance {i} has inputs {sorted(row)}; the model expects {sorted(names)}")
            for n in names:
                columns[n].append(row[n])
        return {s.name: from_json(columns[s.name], s.dtype, s.name) for s in specs}
    if len(specs) != 1:
        raise InputError(f"the model has {len(specs)} inputs {names}: each instance must be an object "
                         f"naming them")
    return {names[0]: from_json(instances, specs[0].dtype, names[0])}


def columns_to_arrays(inputs: Any, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Decode a columnar (``inputs``) request: one tensor, or an object of input name -> tensor."""
    names = [s.name for s in specs]
    if isinstance(inputs, dict) and not (len(specs) == 1 and set(inputs) == {"b64"}):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise InputError(f"unknown input(s) {unknown}; the model expects {sorted(names)}")
        return {s.name: from_json(inputs[s.name], s.dtype, s.name) for s in specs if s.name in inputs}
    if len(specs) != 1:
        raise InputError(f"the model has {len(specs)} inputs {names}: 'inputs' must be an object naming them")
    return {names[0]: from_json(inputs, specs[0].dtype, names[0])}


def arrays_to_rows(outputs: Mapping[str, np.ndarray]) -> Any:
    """Row format (``instances`` / ``predictions``): one tensor is unnamed; several become one object per row."""
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return json_tensor(array, name)
    sizes = {n: (a.shape[0] if a.ndim else None) for n, a in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise InputError(f"tensors {sorted(sizes)} do not share their 0-th dimension ({sizes}), so they "
                         f"cannot be written as rows; use the columnar format ('inputs')")
    columns = {n: json_tensor(a, n) for n, a in outputs.items()}
    return [{n: col[i] for n, col in columns.items()} for i in range(next(iter(sizes.values())))]


def arrays_to_columns(outputs: Mapping[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        name, array = next(iter(outputs.items()))
        return json_tensor(array, name)
    return {n: json_tensor(a, n) for n, a in outputs.items()}


def rows_from_json(predictions: Any, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Client side of ``predictions``: the reverse of ``arrays_to_rows``."""
    if len(specs) == 1:
        return {specs[0].name: from_json(predictions, specs[0].dtype, specs[0].name)}
    if not isinstance(predictions, list) or not all(isinstance(p, dict) for p in predictions):
        raise InferenceError(f"expected 'predictions' as a list of objects naming {[s.name for s in specs]}")
    return {s.name: from_json([p[s.name] for p in predictions], s.dtype, s.name) for s in specs
            if not predictions or s.name in predictions[0]}


def columns_from_json(outputs: Any, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    if len(specs) == 1 and not (isinstance(outputs, dict) and specs[0].name in outputs):
        return {specs[0].name: from_json(outputs, specs[0].dtype, specs[0].name)}
    if not isinstance(outputs, dict):
        raise InferenceError(f"expected 'outputs' as an object naming {[s.name for s in specs]}")
    by_name = {s.name: s for s in specs}
    return {n: from_json(v, by_name[n].dtype if n in by_name else np.dtype(np.float32), n)
            for n, v in outputs.items()}


# --------------------------------------------------------------------------- signatures

def _dim_json(dim: Any) -> dict[str, str]:
    if isinstance(dim, int) and dim >= 0:
        return {"size": str(dim), "name": ""}
    return {"size": "-1", "name": dim if isinstance(dim, str) else ""}


def tensor_info_json(spec: TensorSpec) -> dict[str, Any]:
    return {"dtype": dtype_name(spec.dtype), "name": f"{spec.name}:0",
            "tensor_shape": {"dim": [_dim_json(d) for d in spec.shape], "unknown_rank": False}}


def signature_json(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> dict[str, Any]:
    """A Predict ``SignatureDef`` in TF Serving's JSON form for these specs."""
    return {"inputs": {s.name: tensor_info_json(s) for s in inputs},
            "outputs": {s.name: tensor_info_json(s) for s in outputs}, "method_name": PREDICT_METHOD}


def _spec(name: str, info: Mapping[str, Any]) -> TensorSpec:
    shape_json = info.get("tensor_shape", {}) or {}
    if shape_json.get("unknown_rank") or shape_json.get("unknownRank"):
        shape: tuple[Any, ...] = (None,)  # rank unknown: the server checks what it gets
    else:
        shape = tuple(int(d["size"]) if int(d.get("size", -1)) >= 0 else (d.get("name") or None)
                      for d in shape_json.get("dim", []))
    return TensorSpec(name, numpy_dtype(info.get("dtype", "DT_FLOAT")), shape)


def specs_from_signature(signature: Mapping[str, Any]) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs of one ``SignatureDef`` in JSON form (map keys are the tensor aliases)."""
    return (tuple(_spec(n, i) for n, i in (signature.get("inputs") or {}).items()),
            tuple(_spec(n, i) for n, i in (signature.get("outputs") or {}).items()))


# --------------------------------------------------------------------------- status codes and errors

HTTP_STATUS = {"OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
               "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
               "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
               "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401}
"""gRPC status code -> HTTP status, as TF Serving's REST server maps them (``ToHTTPStatusCode``)."""
_CODE_FOR_HTTP = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                  500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}

_ERROR_FOR_CODE: dict[str, type[KitError]] = {
    "INVALID_ARGUMENT": InputError, "FAILED_PRECONDITION": InputError, "OUT_OF_RANGE": InputError,
    "NOT_FOUND": ModelLoadError, "DEADLINE_EXCEEDED": DeadlineExceeded,
    "RESOURCE_EXHAUSTED": Overloaded, "UNAVAILABLE": Overloaded}
"""Server status -> kit error. UNAVAILABLE (no server, or one shutting down) is ``Overloaded``: the
request was refused before it ran, so another attempt or route may succeed. Anything else is an
``InferenceError``."""


def code_for_http(status: int) -> str:
    return _CODE_FOR_HTTP.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")


def error_for_code(code: str, message: str) -> KitError:
    return _ERROR_FOR_CODE.get(code, InferenceError)(message)


def code_for_error(exc: KitError) -> str:
    """The status a server answers for a kit error raised while serving a request."""
    if isinstance(exc, InputError):
        return "INVALID_ARGUMENT"
    if isinstance(exc, ModelLoadError):
        return "NOT_FOUND"
    if isinstance(exc, DeadlineExceeded):
        return "DEADLINE_EXCEEDED"
    if isinstance(exc, Overloaded):
        return "RESOURCE_EXHAUSTED"
    if isinstance(exc, (CircuitOpen, Closed)):
        return "UNAVAILABLE"
    return "INTERNAL"

"""TensorFlow Serving engine: a Predictor over TF Serving's Predict API, by gRPC or REST.

Point it at a URL and it behaves like any local engine: ``grpc://host:8500`` speaks
``PredictionService.Predict`` with ``TensorProto`` s, ``http://host:8501`` speaks the REST
API (``/v1/models/{name}[/versions/{v}|/labels/{l}]:predict``, columnar or row JSON).
It reads its specs from the server's model metadata (the ``SignatureDef``), so the load
generator, a router or a cache can drive a remote model like a local one, and it works
unchanged against a real TensorFlow Serving or against ``kit serve``.

Deadlines travel with the request (a gRPC deadline; a socket deadline over REST): the
engine's ``timeout_s``, or less when an enclosing ``kit.serve.resilience.Retry`` has less
time left. Server answers become kit errors (``tfserving_wire.error_for_code``): a bad
input is ``InputError``, a missing model or version ``ModelLoadError``, a timeout
``DeadlineExceeded``, a server that refuses or cannot be reached ``Overloaded``.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from kit.config import require_int
from kit.engines import tfserving_wire as wire
from kit.engines.base import Feeds, Outputs, PredictorBase
from kit.engines.deadline import remaining_deadline
from kit.errors import (
    Closed,
    ConfigError,
    DeadlineExceeded,
    InferenceError,
    InputError,
    KitError,
    ModelLoadError,
    Overloaded,
)
from kit.specs import TensorSpec, check_feeds, describe, fast_path_ok

log = logging.getLogger(__name__)

PROTOCOLS = {"grpc": "grpc", "grpcs": "grpc", "http": "rest", "https": "rest"}
DEFAULT_PORTS = {"grpc": 8500, "grpcs": 443, "http": 8501, "https": 443}
REST_FORMATS = ("columnar", "row")
_PATH = re.compile(r"^/*(?:v1/models/)?(?P<name>[^/:]+)?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?/*$")


def parse_url(url: str) -> dict[str, Any]:
    """Split a TF Serving URL into scheme, host, port and the model spec its path may name.

    ``http://h:8501/v1/models/digits/labels/canary`` and ``grpc://h:8500/digits/versions/2``
    both name a model; a bare ``grpc://h:8500`` leaves it to ``model_name``.
    """
    parts = urlsplit(url)
    if parts.scheme not in PROTOCOLS:
        raise ConfigError(f"TF Serving URL must start with grpc://, grpcs://, http:// or https://, got {url!r}")
    match = _PATH.match(parts.path or "/")
    if not parts.hostname or match is None:
        raise ConfigError(f"cannot read host and model from {url!r}; expected e.g. grpc://localhost:8500 or "
                          f"http://localhost:8501/v1/models/NAME[/versions/N|/labels/LABEL]")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"bad port in {url!r}: {exc}") from None
    return {"scheme": parts.scheme, "host": parts.hostname, "port": port, "name": match["name"],
            "version": int(match["version"]) if match["version"] else None, "label": match["label"]}


class TFServingEngine(PredictorBase):
    """A Predictor served by TensorFlow Serving (or ``kit serve``) over gRPC or REST."""

    def __init__(self, url: str, model_name: str | None = None, version: int | None = None,
                 label: str | None = None, *, timeout_s: float = 10.0,
                 signature_name: str = wire.DEFAULT_SIGNATURE, rest_format: str = "columnar",
                 name: str | None = None) -> None:
        where = parse_url(str(url))
        for key, given in (("name", model_name), ("version", version), ("label", label)):
            if given is not None and where[key] is not None and where[key] != given:
                raise ConfigError(f"the URL names {key} {where[key]!r} but {given!r} was passed")
        self.model_name: str | None = model_name or where["name"]
        self.version: int | None = version if version is not None else where["version"]
        self.label: str | None = label or where["label"]
        if not self.model_name:
            raise ConfigError(f"no model name: pass model_name= or put it in the URL ({url!r})")
        if self.version is not None and self.label is not None:
            raise ConfigError(f"pass a version ({self.version}) or a label ({self.label!r}), not both")
        require_int("version", self.version, 0, allow_none=True)
        if not timeout_s or timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        if rest_format not in REST_FORMATS:
            raise ConfigError(f"rest_format must be one of {REST_FORMATS}, got {rest_format!r}")
        self.url = str(url)
        self.protocol = PROTOCOLS[where["scheme"]]
        self.timeout_s = float(timeout_s)
        self.signature_name = signature_name
        self.rest_format = rest_format
        self.name = name or f"{self.model_name}@{self.protocol}"
        transport = _GrpcTransport if self.protocol == "grpc" else _RestTransport
        self._transport = transport(where["scheme"], where["host"], where["port"], self)
        try:
            meta = self.metadata()
        except KitError as exc:
            self._transport.close()
            raise ModelLoadError(f"could not load {self._target()} from TF Serving at {self.url}: {exc}") from exc
        signatures = (meta.get("metadata", {}).get("signature_def", {}) or {}).get("signature_def", {}) or {}
        if signature_name not in signatures:
            self._transport.close()
            raise ModelLoadError(f"{self._target()} at {self.url} has no signature {signature_name!r}; it has "
                                 f"{sorted(signatures)}")
        self._input_specs, self._output_specs = wire.specs_from_signature(signatures[signature_name])
        self._input_names = frozenset(s.name for s in self._input_specs)
        served = (meta.get("model_spec") or {}).get("version")
        self.served_version: int | None = int(served) if served not in (None, "") else None

    # ------------------------------------------------------------------ Predictor

    def predict(self, feeds: Feeds) -> Outputs:
        if self._closed:
            raise Closed(f"engine {self.name!r} is closed")
        if not isinstance(feeds, Mapping):
            raise InputError(f"feeds must be a mapping of input name to array, got {type(feeds).__name__}; "
                             f"the model expects {describe(self._input_specs)}")
        if not fast_path_ok(feeds, self._input_names):
            # lists, byte order, empty batch: decided here as by every engine, before anything is sent
            feeds = check_feeds(self._input_specs, feeds)
        try:
            return self._transport.predict(feeds, self._budget())
        except InputError as exc:
            if "expects" in str(exc):
                raise
            raise InputError(f"{exc}; the model expects {describe(self._input_specs)}") from exc.__cause__

    def model_status(self) -> list[dict[str, Any]]:
        """Versions of this model and their states (``AVAILABLE``, ``LOADING``...), as the server reports them."""
        raw = self._transport.status(self._budget())
        rows = raw.get("model_version_status") or raw.get("modelVersionStatus") or []
        out = []
        for row in rows:
            status = row.get("status") or {}
            out.append({"version": int(row.get("version", 0)), "state": row.get("state", "UNKNOWN"),
                        "error_code": status.get("error_code", status.get("errorCode", "OK")),
                        "error_message": status.get("error_message", status.get("errorMessage", ""))})
        return out

    def metadata(self) -> dict[str, Any]:
        """``GetModelMetadata`` in TF Serving's REST JSON form (the same for both protocols)::

            {"model_spec": {"name", "version", "signature_name"},
             "metadata": {"signature_def": {"signature_def": {NAME: SignatureDef}}}}
        """
        return self._transport.metadata(self._budget())

    def describe(self) -> dict[str, Any]:
        return {"predictor": type(self).__name__, "engine": "tfserving", "name": self.name, "url": self.url,
                "protocol": self.protocol, "model_name": self.model_name, "version": self.version,
                "label": self.label, "served_version": self.served_version, "timeout_s": self.timeout_s,
                "rest_format": self.rest_format if self.protocol == "rest" else None}

    def _close(self) -> None:
        self._transport.close()

    # ------------------------------------------------------------------ helpers

    def _budget(self) -> float:
        left = remaining_deadline()
        budget = self.timeout_s if left is None else min(self.timeout_s, left)
        if budget <= 0:
            raise DeadlineExceeded(f"{self.name}: the request's deadline had already passed")
        return budget

    def _target(self) -> str:
        if self.version is not None:
            return f"model {self.model_name!r} version {self.version}"
        if self.label is not None:
            return f"model {self.model_name!r} label {self.label!r}"
        return f"model {self.model_name!r}"

    def _order(self, outputs: dict[str, np.ndarray]) -> Outputs:
        ordered = {s.name: outputs.pop(s.name) for s in self._output_specs if s.name in outputs}
        ordered.update(outputs)
        return ordered


class _GrpcTransport:
    """``PredictionService`` and ``ModelService`` stubs on one channel (thread-safe)."""

    def __init__(self, scheme: str, host: str, port: int, engine: TFServingEngine) -> None:
        self.apis = apis = wire.grpc_apis()
        self.engine = engine
        self.target = f"{host}:{port}"
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        grpc = apis.grpc
        self.channel = (grpc.secure_channel(self.target, grpc.ssl_channel_credentials(), options=options)
                        if scheme == "grpcs" else grpc.insecure_channel(self.target, options=options))
        self.prediction = apis.prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = apis.model_service_pb2_grpc.ModelServiceStub(self.channel)

    def _spec(self, spec: Any, signature: bool = True) -> None:
        e = self.engine
        spec.name = e.model_name
        if e.version is not None:
            spec.version.value = e.version
        elif e.label is not None:
            spec.version_label = e.label
        if signature:
            spec.signature_name = e.signature_name

    def _call(self, method: Any, request: Any, timeout: float) -> Any:
        try:
            return method(request, timeout=timeout)
        except self.apis.grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            details = exc.details() or code
            if code == "UNAVAILABLE":
                details = f"TF Serving at {self.target} is unavailable ({details})"
            elif code == "DEADLINE_EXCEEDED":
                details = f"no answer from {self.target} within {timeout:.3f} s"
            raise wire.error_for_code(code, f"{self.engine.name}: {details} [{code}]") from None

    def predict(self, feeds: Feeds, timeout: float) -> Outputs:
        request = self.apis.predict_pb2.PredictRequest()
        self._spec(request.model_spec)
        for key, value in feeds.items():
            wire.fill_tensor_proto(request.inputs[key], value)
        response = self._call(self.prediction.Predict, request, timeout)
        try:
            return self.engine._order({k: wire.to_ndarray(v) for k, v in response.outputs.items()})
        except InputError as exc:
            raise InferenceError(f"{self.engine.name}: unreadable response: {exc}") from exc

    def metadata(self, timeout: float) -> dict[str, Any]:
        pb = self.apis.get_model_metadata_pb2
        request = pb.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, signature=False)
        response = self._call(self.prediction.GetModelMetadata, request, timeout)
        to_dict = self.apis.json_format.MessageToDict
        signatures = pb.SignatureDefMap()
        if "signature_def" in response.metadata:
            response.metadata["signature_def"].Unpack(signatures)
        return {"model_spec": to_dict(response.model_spec, preserving_proto_field_name=True),
                "metadata": {"signature_def": to_dict(signatures, preserving_proto_field_name=True)}}

    def status(self, timeout: float) -> dict[str, Any]:
        request = self.apis.get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, signature=False)
        response = self._call(self.models.GetModelStatus, request, timeout)
        return self.apis.json_format.MessageToDict(response, preserving_proto_field_name=True,
                                                   always_print_fields_with_no_presence=True)

    def close(self) -> None:
        self.channel.close()


class _RestTransport:
    """HTTP/1.1 keep-alive connections, one per calling thread (``http.client`` is not thread-safe)."""

    def __init__(self, scheme: str, host: str, port: int, engine: TFServingEngine) -> None:
        self.engine = engine
        self.scheme, self.host, self.port = scheme, host, port
        path = f"/v1/models/{quote(engine.model_name or '', safe='')}"
        if engine.version is not None:
            path += f"/versions/{engine.version}"
        elif engine.label is not None:
            path += f"/labels/{quote(engine.label, safe='')}"
        self.path = path
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    def request(self, method: str, path: str, body: bytes | None, timeout: float) -> Any:
        name = self.engine.name
        deadline = time.monotonic() + timeout
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):
            reused = False
            try:
                conn, reused = self._connection(timeout)
                conn.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                status = response.status
                if response.will_close:
                    self._drop()
                break
            except TimeoutError as exc:
                self._drop()  # a late answer must never be read as the next request's
                raise DeadlineExceeded(f"{name}: no answer from {self.host}:{self.port} within {timeout:.3f} s") \
                    from exc
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._drop()
                if reused and attempt == 0 and time.monotonic() < deadline:
                    continue  # the server closed an idle keep-alive connection: open a fresh one
                big = body is not None and len(body) > 2**20
                hint = (f"; the body was {len(body) / 2**20:.1f} MB, so the server's request-size limit (kit serve's "
                        f"max_request_bytes, 16 MB by default) may have closed the connection" if big else "")
                raise Overloaded(f"{name}: TF Serving at {self.scheme}://{self.host}:{self.port} is unavailable "
                                 f"({type(exc).__name__}: {exc}){hint}") from exc
        try:
            payload = json.loads(data) if data else {}
        except ValueError as exc:
            raise wire.error_for_code(wire.code_for_http(status) if status != 200 else "DATA_LOSS",
                                      f"{name}: HTTP {status} with a body that is not JSON: {data[:200]!r}") from exc
        if status != 200:
            message = payload.get("error", data[:200]) if isinstance(payload, dict) else data[:200]
            code = wire.code_for_http(status)
            raise wire.error_for_code(code, f"{name}: {message} [HTTP {status}, {code}]")
        return payload

    def predict(self, feeds: Feeds, timeout: float) -> Outputs:
        engine = self.engine
        # JSON carries no dtypes (the server casts to the signature's), so check here what gRPC's
        # TensorProtos let the server check: both protocols then refuse the same feeds.
        arrays = check_feeds(engine.input_specs, feeds)
        body: dict[str, Any] = {"signature_name": engine.signature_name}
        if engine.rest_format == "row":
            body["instances"] = wire.arrays_to_rows(arrays)
        else:
            body["inputs"] = {k: wire.json_tensor(a, k) for k, a in arrays.items()}
        payload = self.request("POST", self.path + ":predict", json.dumps(body).encode(), timeout)
        specs: Sequence[TensorSpec] = engine.output_specs
        try:
            if "outputs" in payload:
                return engine._order(wire.columns_from_json(payload["outputs"], specs))
            if "predictions" in payload:
                return engine._order(wire.rows_from_json(payload["predictions"], specs))
        except InputError as exc:
            raise InferenceError(f"{engine.name}: unreadable response: {exc}") from exc
        raise InferenceError(f"{engine.name}: response has neither 'outputs' nor 'predictions': "
                                  f"{sorted(payload)}")

    def metadata(self, timeout: float) -> dict[str, Any]:
        return self.request("GET", self.path + "/metadata", None, timeout)

    def status(self, timeout: float) -> dict[str, Any]:
        return self.request("GET", self.path, None, timeout)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


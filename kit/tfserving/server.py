"""``kit serve``: any kit Predictor behind TensorFlow Serving's API, over gRPC and REST.

It speaks ``PredictionService.Predict`` / ``GetModelMetadata`` and ``ModelService.GetModelStatus``
over gRPC (the generated servicers of ``tensorflow-serving-api``) and the same calls over
REST (``/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]``, row and columnar
JSON), with TF Serving's status codes, HTTP statuses and messages. So an ONNX model, a
SavedModel or a whole wrapped stack can be measured in-process and remote side by side,
and ``TFServingEngine`` has a peer to test against without Docker.

It is an experimentation and test server: bound to 127.0.0.1 by default, a thread per
request, no batching of its own. Production belongs on TensorFlow Serving (or a comparable
server), which the very same client talks to unchanged.

Models come from a ``ServableSource`` (kit.tfserving.sources): a plain mapping ``name -> {version: Predictor}`` with
labels (``StaticModels``), ``kit.tfserving.versions.ModelRegistry`` objects (``RegistrySource``:
their versions, labels and atomic switches, read per request), or any object with the same
four methods. The server depends on the protocol only, never on the registry module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import numpy as np

from kit.config import require_int, resolve
from kit.engines import tfserving_wire as wire
from kit.engines.base import Outputs, Predictor
from kit.errors import ConfigError, DeadlineExceeded, InputError, KitError, ModelLoadError, ServingError
from kit.specs import check_feeds

from kit.tfserving.sources import as_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how ``ModelServer`` listens; a port of 0 picks a free one, ``None`` turns a protocol off."""

    host: str = "127.0.0.1"
    grpc_port: int | None = 0
    rest_port: int | None = 0
    max_workers: int = 8
    max_concurrent_rpcs: int | None = None
    grace_s: float = 1.0

    def __post_init__(self) -> None:
        for key in ("grpc_port", "rest_port"):
            port = getattr(self, key)
            if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
                raise ConfigError(f"{key} must be an int in [0, 65535] (0 = any free port) or None, got {port!r}")
        if self.grpc_port is None and self.rest_port is None:
            raise ConfigError("turn on at least one protocol: grpc_port and rest_port are both None")
        require_int("max_workers", self.max_workers)
        if self.max_concurrent_rpcs is not None and self.max_concurrent_rpcs < 1:
            raise ConfigError(f"max_concurrent_rpcs must be >= 1 or None, got {self.max_concurrent_rpcs!r}")
        if self.grace_s < 0:
            raise ConfigError(f"grace_s must be >= 0, got {self.grace_s!r}")


class ModelServer:
    """TF Serving's Predict / GetModelMetadata / GetModelStatus for kit Predictors; a context manager.

    ``models`` is a mapping accepted by ``StaticModels`` (with ``labels``), one or more
    ``ModelRegistry`` objects, or any ``ServableSource``. The server lends the predictors and
    does not close them, unless ``close_models`` is set.
    """

    def __init__(self, models: Any, labels: Mapping[str, Mapping[str, int]] | None = None,
                 config: ServerConfig | None = None, *, close_models: bool = False, **overrides: Any) -> None:
        self.config = resolve(ServerConfig, config, overrides)
        self.source = as_source(models, labels)
        self.close_models = close_models
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc: Any = None
        self._http: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._wake = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def grpc_url(self) -> str:
        if self.grpc_port is None:
            raise ServingError("the gRPC endpoint is not running (start the server, with grpc_port not None)")
        return f"grpc://{self.config.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        if self.rest_port is None:
            raise ServingError("the REST endpoint is not running (start the server, with rest_port not None)")
        return f"http://{self.config.host}:{self.rest_port}"

    def start(self) -> ModelServer:
        cfg = self.config
        try:
            if cfg.grpc_port is not None:
                self._start_grpc()
            if cfg.rest_port is not None:
                try:
                    self._http = _HTTPServer((cfg.host, cfg.rest_port), _Handler, self)
                except OSError as exc:
                    raise ServingError(f"cannot listen for REST on {cfg.host}:{cfg.rest_port}: {exc}") from exc
                self.rest_port = self._http.server_address[1]
                self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                                     name="kit-serve-rest", daemon=True)
                self._http_thread.start()
        except BaseException:
            self.stop()
            raise
        log.info("kit serve: %s", ", ".join(u for u in (self.grpc_port and self.grpc_url,
                                                        self.rest_port and self.rest_url) if u))
        return self

    def _start_grpc(self) -> None:
        apis = wire.grpc_apis()
        cfg = self.config
        server = apis.grpc.server(ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="kit-serve-grpc"),
                                  maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
                                  options=[("grpc.max_receive_message_length", -1),
                                           ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        prediction, models = _servicers(self)
        apis.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        apis.model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
        try:
            port = server.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
        except RuntimeError as exc:
            port, error = 0, exc
        else:
            error = None
        if not port:
            raise ServingError(f"cannot listen for gRPC on {cfg.host}:{cfg.grpc_port}: {error or 'port in use?'}")
        server.start()
        self._grpc, self.grpc_port = server, port

    def stop(self, grace_s: float | None = None) -> None:
        """Stop both endpoints: in-flight gRPC calls get ``grace_s``; open REST connections are closed."""
        grace = self.config.grace_s if grace_s is None else grace_s
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.close_connections()
            self._http.server_close()
            if self._http_thread is not None:
                self._http_thread.join(timeout=max(grace, 1.0))
            self._http, self._http_thread = None, None
        self.grpc_port = self.rest_port = None
        if self.close_models and not self._stopped.is_set() and hasattr(self.source, "close"):
            self.source.close()
        self._stopped.set()

    def serve_forever(self) -> None:
        """Block until Ctrl-C, SIGTERM or ``request_stop()``, then stop cleanly; for the command line."""
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda *_: self._wake.set())
        try:
            while not self._wake.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.stop()

    def request_stop(self) -> None:
        """Make ``serve_forever`` return (from another thread or a signal handler)."""
        self._wake.set()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the API, protocol-free

    @contextlib.contextmanager
    def servable(self, name: str, version: int | None, label: str | None,
                 signature_name: str = "") -> Iterator[tuple[int, Predictor]]:
        if signature_name not in ("", wire.DEFAULT_SIGNATURE):
            raise InputError(f'Serving signature name: "{signature_name}" not found in signature def')
        resolved = self.source.resolve(name, version, label)
        with self.source.acquire(name, resolved) as predictor:
            yield resolved, predictor

    @staticmethod
    def run(predictor: Predictor, feeds: Mapping[str, np.ndarray], output_filter: list[str] | None = None) -> Outputs:
        arrays = check_feeds(predictor.input_specs, feeds)
        try:
            outputs = predictor.predict(arrays)
        except KitError:
            raise
        except Exception as exc:  # a predictor's bug must not kill the server thread silently
            log.exception("predictor %r failed", getattr(predictor, "name", predictor))
            raise ServingError(f"{type(exc).__name__}: {exc}") from exc
        if output_filter:
            unknown = [n for n in output_filter if n not in outputs]
            if unknown:
                raise InputError(f"output tensor alias not found in signature: {unknown[0]}; outputs are "
                                 f"{sorted(outputs)}")
            outputs = {n: outputs[n] for n in output_filter}
        return outputs

    def status(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        """``GetModelStatusResponse`` in its JSON form."""
        states = self.source.versions(name)
        if version is not None or label is not None:
            wanted = self.source.resolve(name, version, label)
            if wanted not in states:
                raise ModelLoadError(f"Could not find version {wanted} of model {name}")
            states = {wanted: states[wanted]}
        return {"model_version_status": [{"version": str(v), "state": s,
                                          "status": {"error_code": "OK", "error_message": ""}}
                                         for v, s in sorted(states.items(), reverse=True)]}

    def metadata(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        """``GetModelMetadataResponse`` in TF Serving's REST JSON form."""
        with self.servable(name, version, label) as (resolved, predictor):
            signature = wire.signature_json(predictor.input_specs, predictor.output_specs)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(resolved)},
                "metadata": {"signature_def": {"signature_def": {wire.DEFAULT_SIGNATURE: signature}}}}


# --------------------------------------------------------------------------- gRPC

def _servicers(server: ModelServer) -> tuple[Any, Any]:
    """The two gRPC servicers, built on first use because their bases come from tensorflow-serving-api."""
    apis = wire.grpc_apis()
    grpc, json_format = apis.grpc, apis.json_format
    md = apis.get_model_metadata_pb2

    def spec_of(request: Any) -> tuple[str, int | None, str | None]:
        spec = request.model_spec
        return spec.name, (spec.version.value if spec.HasField("version") else None), (spec.version_label or None)

    def abort(context: Any, exc: KitError) -> None:
        code = wire.code_for_error(exc)
        context.abort(getattr(grpc.StatusCode, code), str(exc))

    class PredictionService(apis.prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's method name
            name, version, label = spec_of(request)
            try:
                with server.servable(name, version, label, request.model_spec.signature_name) as (resolved, p):
                    feeds = {k: wire.to_ndarray(t) for k, t in request.inputs.items()}
                    remaining = context.time_remaining()
                    if remaining is not None and remaining <= 0:
                        raise DeadlineExceeded("the request's deadline passed before it ran")
                    outputs = server.run(p, feeds, list(request.output_filter))
                response = apis.predict_pb2.PredictResponse()
                for key, array in outputs.items():
                    wire.fill_tensor_proto(response.outputs[key], np.asarray(array))
            except KitError as exc:
                abort(context, exc)
            response.model_spec.name = name
            response.model_spec.version.value = resolved
            response.model_spec.signature_name = request.model_spec.signature_name or wire.DEFAULT_SIGNATURE
            return response

        def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
            try:
                fields = list(request.metadata_field)
                if not fields:
                    raise InputError("GetModelMetadataRequest must specify at least one metadata_field")
                unsupported = [f for f in fields if f != "signature_def"]
                if unsupported:
                    raise InputError(f"Metadata field {unsupported[0]} is not supported")
                meta = server.metadata(*spec_of(request))
            except KitError as exc:
                abort(context, exc)
            response = md.GetModelMetadataResponse()
            json_format.ParseDict(meta["model_spec"], response.model_spec)
            signatures = json_format.ParseDict(meta["metadata"]["signature_def"], md.SignatureDefMap())
            response.metadata["signature_def"].Pack(signatures)
            return response

    class ModelService(apis.model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
            try:
                status = server.status(*spec_of(request))
            except KitError as exc:
                abort(context, exc)
            return json_format.ParseDict(status, apis.get_model_status_pb2.GetModelStatusResponse())

    return PredictionService(), ModelService()


# --------------------------------------------------------------------------- REST

_PREDICT_PATH = re.compile(r"(?i)/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                           r":(?P<method>classify|regress|predict)")
_STATUS_PATH = re.compile(r"(?i)/v1/models(?:/(?P<name>[^/:]+))?(?:/versions/(?P<version>\d+)|"
                          r"/labels/(?P<label>[^/:]+))?(?:/(?P<sub>metadata))?")


def _rest(server: ModelServer, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """One REST request -> (HTTP status, JSON payload), with TF Serving's paths, formats and errors."""
    path = path.split("?", 1)[0]
    if not path.lower().startswith("/v1/"):
        return 404, {"error": f"no such resource: {path}; kit serve answers /v1/models/..."}
    try:
        pattern = _PREDICT_PATH if method == "POST" else _STATUS_PATH
        match = pattern.fullmatch(path)
        if match is None:
            raise InputError(f"Malformed request: {method} {path}")
        name = unquote(match["name"] or "")
        version = int(match["version"]) if match["version"] else None
        label = unquote(match["label"]) if match["label"] else None
        if not name:
            raise InputError("Missing model name in request.")
        if method == "GET":
            return 200, server.metadata(name, version, label) if match["sub"] else server.status(name, version, label)
        if match["method"].lower() != "predict":
            return 501, {"error": f"kit serve implements predict only, not {match['method']}"}
        return 200, _rest_predict(server, name, version, label, body)
    except KitError as exc:
        return wire.HTTP_STATUS[wire.code_for_error(exc)], {"error": str(exc)}


def _rest_predict(server: ModelServer, name: str, version: int | None, label: str | None,
                  body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise InputError(f"JSON Parse error: {exc}") from None
    if not isinstance(request, dict):
        raise InputError("the request body must be a JSON object")
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise InputError("'signature_name' key must be a string value.")
    if ("instances" in request) == ("inputs" in request):
        raise InputError("Missing 'inputs' or 'instances' key" if "inputs" not in request else
                         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    with server.servable(name, version, label, signature) as (_, predictor):
        if "instances" in request:
            feeds = wire.rows_to_arrays(request["instances"], predictor.input_specs)
        else:
            feeds = wire.columns_to_arrays(request["inputs"], predictor.input_specs)
        outputs = {k: np.asarray(v) for k, v in server.run(predictor, feeds).items()}
    if "instances" in request:
        return {"predictions": wire.arrays_to_rows(outputs)}
    return {"outputs": wire.arrays_to_columns(outputs)}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, app: ModelServer) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def close_connections(self) -> None:
        """Wake keep-alive handler threads blocked on reading, so that stop() leaves none behind."""
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's clients expect
    disable_nagle_algorithm = True
    server_version = "kit-serve"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's method name
        self._answer(*_rest(self.server.app, "GET", self.path, b""))

    def do_POST(self) -> None:  # noqa: N802
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._answer(411, {"error": "a POST needs a Content-Length header"})
            return
        body = self.rfile.read(int(length))
        self._answer(*_rest(self.server.app, "POST", self.path, body))

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:  # the client gave up (its deadline passed): nothing to answer
            log.debug("client went away before the answer: %s", exc)
            self.close_connection = True


# --------------------------------------------------------------------------- command line

def server_for_paths(paths: list[str], name: str | None = None, labels: list[str] | None = None,
                     **config: Any) -> ModelServer:
    """What ``kit serve PATH... --name N --label stable=1`` runs: each path becomes the next version.

    Every model loads with ``create_engine`` (an ONNX file on ONNX Runtime, a SavedModel on
    TensorFlow...); the server owns and closes them.
    """
    from pathlib import Path

    from kit.engines.registry import create_engine

    if not paths:
        raise ConfigError("give at least one model path to serve")
    name = name or Path(paths[0]).stem or Path(paths[0]).name
    label_map: dict[str, int] = {}
    for item in labels or []:
        label, _, version = item.partition("=")
        if not label or not version.isdigit():
            raise ConfigError(f"a label is LABEL=VERSION (e.g. stable=1), got {item!r}")
        label_map[label] = int(version)
    versions: dict[int, Predictor] = {}
    try:
        for number, path in enumerate(paths, start=1):
            versions[number] = create_engine(path)
        return ModelServer({name: versions}, {name: label_map} if label_map else None,
                           close_models=True, **config)
    except BaseException:
        for predictor in versions.values():
            predictor.close()
        raise

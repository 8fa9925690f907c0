"""``kit serve``: any kit Predictor behind TensorFlow Serving's API, over gRPC and REST.

It speaks ``PredictionService.Predict`` / ``GetModelMetadata`` and ``ModelService.GetModelStatus``
over gRPC (the generated servicers of ``tensorflow-serving-api``) and the same calls over
REST (``/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]``, row and columnar
JSON), with TF Serving's status codes, HTTP statuses and messages. So an ONNX model, a
SavedModel or a whole wrapped stack can be measured in-process and remote side by side,
and ``TFServingEngine`` has a peer to test against without Docker.

It is an experimentation and test server: bound to 127.0.0.1 by default, no batching of its
own, REST on tornado (kit.tfserving.rest), with limits on request size, declared elements,
concurrency and slow clients (``ServerConfig``). Production belongs on TensorFlow Serving (or a comparable
server), which the very same client talks to unchanged.

Models come from a ``ServableSource`` (kit.tfserving.sources): a plain mapping ``name -> {version: Predictor}`` with
labels (``StaticModels``), ``kit.tfserving.versions.ModelRegistry`` objects (``RegistrySource``:
their versions, labels and atomic switches, read per request), or any object with the same
four methods. The server depends on the protocol only, never on the registry module.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.config import require_int, resolve
from kit.engines import tfserving_wire as wire
from kit.engines.base import Outputs, Predictor
from kit.errors import ConfigError, DeadlineExceeded, InputError, KitError, ModelLoadError, ServingError
from kit.specs import check_feeds
from kit.tfserving.rest import RestEndpoint
from kit.tfserving.sources import as_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how ``ModelServer`` listens; a port of 0 picks a free one, ``None`` turns a protocol off.

    The limits protect the server from one client: ``max_request_bytes`` (a REST body or a gRPC
    message), ``max_request_elements`` (the elements a gRPC tensor declares, checked before
    anything is allocated), ``max_concurrent_requests`` (running or waiting, per protocol; more
    are refused with RESOURCE_EXHAUSTED / 429), ``read_timeout_s`` (a REST client's time to send
    its body), ``idle_timeout_s`` (a connection without a request), ``backlog`` (connections
    waiting to be accepted). ``rest_nan``: ``"literal"`` writes NaN/Infinity as TF Serving does,
    ``"refuse"`` answers 500 instead of emitting JSON that strict parsers reject.
    """

    host: str = "127.0.0.1"
    grpc_port: int | None = 0
    rest_port: int | None = 0
    max_workers: int = 8
    max_concurrent_requests: int = 256
    max_request_bytes: int = 16 * 2**20
    max_request_elements: int = 2**24
    read_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    backlog: int = 1024
    rest_nan: str = "literal"
    grace_s: float = 1.0

    def __post_init__(self) -> None:
        for key in ("grpc_port", "rest_port"):
            port = getattr(self, key)
            if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
                raise ConfigError(f"{key} must be an int in [0, 65535] (0 = any free port) or None, got {port!r}")
        if self.grpc_port is None and self.rest_port is None:
            raise ConfigError("turn on at least one protocol: grpc_port and rest_port are both None")
        for key in ("max_workers", "max_concurrent_requests", "max_request_bytes", "max_request_elements",
                    "backlog"):
            require_int(key, getattr(self, key))
        for key in ("read_timeout_s", "idle_timeout_s"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{key} must be a number of seconds > 0, got {value!r}")
        if self.rest_nan not in ("literal", "refuse"):
            raise ConfigError(f"rest_nan must be 'literal' (as TF Serving writes NaN) or 'refuse', "
                              f"got {self.rest_nan!r}")
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
        self._rest: RestEndpoint | None = None
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
                self._rest = RestEndpoint(self)
                self.rest_port = self._rest.port
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
                                  maximum_concurrent_rpcs=cfg.max_concurrent_requests,
                                  options=[("grpc.max_receive_message_length", cfg.max_request_bytes),
                                           ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0),
                                           ("grpc.max_connection_idle_ms", int(cfg.idle_timeout_s * 1000))])
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
        if self._rest is not None:
            self._rest.stop(grace)
            self._rest = None
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

def _decode(name: str, proto: Any, max_elements: int) -> np.ndarray:
    """``wire.to_ndarray`` behind the checks that keep a hostile TensorProto from allocating or raising raw.

    The declared shape is checked (no negative dimension, at most ``max_elements`` elements)
    before a single value is decoded, and ``tensor_content`` must be whole elements of a
    numeric dtype; whatever else the decoder refuses is an ``InputError`` (INVALID_ARGUMENT).
    """
    dims = [int(d.size) for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise InputError(f"input '{name}' has a negative dimension in its shape {dims}; a request's tensor "
                         f"needs every size")
    count = math.prod(dims)
    if count > max_elements:
        raise InputError(f"input '{name}' declares shape {dims} = {count} elements, more than this server "
                         f"takes (max_request_elements={max_elements})")
    apis = wire.grpc_apis()
    try:
        dtype_name = apis.types_pb2.DataType.Name(proto.dtype)
    except ValueError:
        raise InputError(f"input '{name}' has an unknown dtype number {proto.dtype}") from None
    dtype = wire.numpy_dtype(dtype_name)
    if proto.tensor_content:
        if dtype.kind == "O":
            raise InputError(f"input '{name}' is {dtype_name}: strings go in string_val, not tensor_content")
        if len(proto.tensor_content) % dtype.itemsize:
            raise InputError(f"input '{name}': tensor_content holds {len(proto.tensor_content)} bytes, not a "
                             f"whole number of {dtype_name} values ({dtype.itemsize} bytes each)")
    try:
        return wire.to_ndarray(proto)
    except KitError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise InputError(f"input '{name}' cannot be decoded: {type(exc).__name__}: {exc}") from None


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
                    feeds = {k: _decode(k, t, server.config.max_request_elements)
                             for k, t in request.inputs.items()}
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
        if not label or not (version.isascii() and version.isdigit()):
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

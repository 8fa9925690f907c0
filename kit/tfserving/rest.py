"""The REST side of ``kit serve``: TF Serving's REST API on tornado, with limits.

``ModelServer`` owns one ``RestEndpoint``: a tornado ``HTTPServer`` on its own event-loop
thread (tornado comes with Jupyter, so the kit gains no dependency) that reads requests
asynchronously and runs each one on a bounded thread pool. So a burst of clients waits in a
real listen backlog instead of being reset (``http.server``'s backlog was 5), and a client that
stalls holds a socket until its timeout, never a thread. Limits, all in ``ServerConfig``:

- ``max_request_bytes``: a larger body is refused before it is read (tornado answers 400 and
  closes the connection; a Content-Length over the limit is refused at once);
- ``max_concurrent_requests``: requests running or waiting for a worker; more get 429
  (RESOURCE_EXHAUSTED) at once;
- ``read_timeout_s``: the time a client has to send its body once the headers arrived;
- ``idle_timeout_s``: the time a connection may sit without a request (headers included).

JSON is read strictly where TF Serving's parser would not guess: a body nested too deeply, a
number that overflows a double (``1e400``) and ``true``/``false`` for a model without boolean
inputs are ``400``. ``NaN`` and ``Infinity`` are read and written as literals, as TF Serving
(rapidjson with ``kParseNanAndInfFlag``/``kWriteNanAndInfFlag``) does: strict JSON parsers
refuse them, so ask for ``rest_nan="refuse"`` to answer 500 rather than emit them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from kit.engines import tfserving_wire as wire
from kit.errors import InferenceError, InputError, KitError, ServingError

if TYPE_CHECKING:
    from kit.tfserving.server import ModelServer

log = logging.getLogger(__name__)

_PREDICT_PATH = re.compile(r"(?i)/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                           r":(?P<method>classify|regress|predict)")
_STATUS_PATH = re.compile(r"(?i)/v1/models(?:/(?P<name>[^/:]+))?(?:/versions/(?P<version>\d+)|"
                          r"/labels/(?P<label>[^/:]+))?(?:/(?P<sub>metadata))?")


def rest_call(server: ModelServer, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
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
        return 200, _predict(server, name, version, label, body)
    except KitError as exc:
        return wire.HTTP_STATUS[wire.code_for_error(exc)], {"error": str(exc)}


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InputError(f"JSON number {text[:40]} does not fit in a double")
    return value


def loads(body: bytes) -> Any:
    """JSON as TF Serving reads it: NaN/Infinity literals allowed, overflow and deep nesting refused."""
    try:
        return json.loads(body, parse_float=_finite_float)
    except InputError:
        raise
    except RecursionError:
        raise InputError("JSON Parse error: the body is nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise InputError(f"JSON Parse error: {exc}") from None


def _has_bool(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if item is True or item is False:
            return True
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False


def _predict(server: ModelServer, name: str, version: int | None, label: str | None,
             body: bytes) -> dict[str, Any]:
    request = loads(body)
    if not isinstance(request, dict):
        raise InputError("the request body must be a JSON object")
    signature = request.get("signature_name", "")
    if not isinstance(signature, str):
        raise InputError("'signature_name' key must be a string value.")
    if ("instances" in request) == ("inputs" in request):
        raise InputError("Missing 'inputs' or 'instances' key" if "inputs" not in request else
                         "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    tensors = request.get("instances", request.get("inputs"))
    with server.servable(name, version, label, signature) as (_, predictor):
        specs = predictor.input_specs
        if not any(np.dtype(s.dtype) == np.bool_ for s in specs) and _has_bool(tensors):
            raise InputError(f"JSON true/false given, but the model has no boolean input; it expects "
                             f"{', '.join(f'{s.name}: {np.dtype(s.dtype).name}' for s in specs)}")
        try:
            if "instances" in request:
                feeds = wire.rows_to_arrays(tensors, specs)
            else:
                feeds = wire.columns_to_arrays(tensors, specs)
        except RecursionError:
            raise InputError("the request's tensors are nested too deeply") from None
        outputs = {k: np.asarray(v) for k, v in server.run(predictor, feeds).items()}
    if server.config.rest_nan == "refuse":
        bad = [k for k, a in outputs.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
        if bad:
            raise InferenceError(f"output(s) {bad} hold NaN or Infinity, which strict JSON cannot carry "
                                 f"(rest_nan='refuse')")
    if "instances" in request:
        return {"predictions": wire.arrays_to_rows(outputs)}
    return {"outputs": wire.arrays_to_columns(outputs)}


class RestEndpoint:
    """A tornado HTTP server on its own event-loop thread, answering ``rest_call`` on a bounded pool."""

    def __init__(self, app: ModelServer) -> None:
        from tornado.netutil import bind_sockets

        cfg = app.config
        self.app = app
        try:
            self._sockets = bind_sockets(cfg.rest_port, address=cfg.host, backlog=cfg.backlog)
        except OSError as exc:
            raise ServingError(f"cannot listen for REST on {cfg.host}:{cfg.rest_port}: {exc}") from exc
        self.port: int = self._sockets[0].getsockname()[1]
        self.in_flight = 0
        self.refused = 0
        self.pool = ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="kit-serve-rest")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: Any = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kit-serve-rest-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self.stop()
            raise ServingError(f"the REST server did not start: {self._failure}") from self._failure

    def _run(self) -> None:
        from tornado.httpserver import HTTPServer
        from tornado.web import Application

        cfg = self.app.config
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            application = Application([(r".*", _Handler, {"endpoint": self})], compress_response=False)
            self._http = HTTPServer(application, max_body_size=cfg.max_request_bytes,
                                    max_buffer_size=cfg.max_request_bytes, body_timeout=cfg.read_timeout_s,
                                    idle_connection_timeout=cfg.idle_timeout_s, decompress_request=False)
            self._http.add_sockets(self._sockets)
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop listening, close every connection (keep-alive ones too) and end the loop thread."""
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            async def shutdown() -> None:
                if self._http is not None:
                    self._http.stop()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._http.close_all_connections(), max(grace_s, 0.5))

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=max(grace_s, 0.5) + 2)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=max(grace_s, 1.0) + 2)
        else:
            for sock in self._sockets:
                sock.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _handler_base() -> type:
    from tornado.web import RequestHandler

    return RequestHandler


class _Handler(_handler_base()):  # type: ignore[misc]
    endpoint: RestEndpoint

    def initialize(self, endpoint: RestEndpoint) -> None:
        self.endpoint = endpoint

    def check_xsrf_cookie(self) -> None:  # an API, not a form
        pass

    async def get(self) -> None:
        await self._serve("GET")

    async def post(self) -> None:
        await self._serve("POST")

    async def _serve(self, method: str) -> None:
        from tornado.iostream import StreamClosedError

        ep = self.endpoint
        limit = ep.app.config.max_concurrent_requests
        if ep.in_flight >= limit:  # only the loop thread touches the counter
            ep.refused += 1
            status, payload = 429, {"error": f"kit serve is busy: {ep.in_flight} requests in flight "
                                             f"(max_concurrent_requests={limit}); retry later"}
        else:
            ep.in_flight += 1
            try:
                status, payload = await asyncio.get_running_loop().run_in_executor(
                    ep.pool, _answer, ep.app, method, self.request.uri or "/", self.request.body)
            finally:
                ep.in_flight -= 1
        try:
            data = json.dumps(payload, allow_nan=True).encode()
        except (TypeError, ValueError) as exc:
            status, data = 500, json.dumps({"error": f"the answer cannot be written as JSON: {exc}"}).encode()
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Client Closed Request" if status == 499 else "Error"
        self.set_status(status, reason)
        self.set_header("Content-Type", "application/json")
        try:
            await self.finish(data)
        except StreamClosedError:  # the client gave up (its deadline passed): nothing to answer
            log.debug("client went away before the answer")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        log.error("kit serve REST handler failed", exc_info=(typ, value, tb))


def _answer(app: ModelServer, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """``rest_call`` on a worker thread; whatever escapes becomes a 500 with the error named, never a dropped socket."""
    try:
        return rest_call(app, method, path, body)
    except Exception as exc:  # noqa: BLE001 - a bug must answer, not kill the connection
        log.exception("REST %s %s failed", method, path)
        return 500, {"error": f"{type(exc).__name__}: {exc}"}

"""``kit serve`` under load and hostile input: no lost requests, no raw errors, limits that hold."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

from kit.engines.base import Wrapper
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.testing import run_threads
from kit.tfserving.server import ModelServer


class Constant(Wrapper):
    """Answers a fixed output (NaN, say) whatever the input."""

    def __init__(self, inner, value: float) -> None:
        super().__init__(inner, "constant")
        self.value = value

    def predict(self, feeds):
        out = self.inner.predict(feeds)
        return {k: np.full_like(v, self.value) for k, v in out.items()}


@pytest.fixture(scope="module")
def add(add_onnx):
    with OnnxRuntimeEngine(add_onnx) as engine:
        yield engine


@pytest.fixture(scope="module")
def server(add):
    with ModelServer({"add": add, "nan": Constant(add, float("nan"))}, max_request_bytes=1 << 20,
                     max_request_elements=1 << 16, read_timeout_s=0.5, idle_timeout_s=5) as srv:
        yield srv


def post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_rest_answers_every_one_of_200_concurrent_clients(add):
    """http.server's backlog of 5 reset about a quarter of these connections.

    The server keeps its default read timeout here: the shared fixture's 0.5 s (for the stalled-client
    test) would drop a client that a loaded 2-core machine did not schedule in time, which is not the
    defect this test is about.
    """
    body = json.dumps({"instances": [[1.0] * 64]}).encode()
    with ModelServer({"add": add}, close_models=False) as server:
        statuses = run_threads(lambda i: post(server.rest_port, "/v1/models/add:predict", body)[0], 200,
                               timeout_s=120)
    assert statuses == [200] * 200


def grpc_predict(server, tensor_fill, timeout: float = 30.0):
    from kit.engines import tfserving_wire as wire

    apis = wire.grpc_apis()
    request = apis.predict_pb2.PredictRequest()
    request.model_spec.name = "add"
    tensor_fill(request.inputs["x"], apis)
    with apis.grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = apis.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=timeout)
        except apis.grpc.RpcError as exc:
            return exc.code().name, exc.details()
    return "OK", ""


def _proto(dtype: str, dims: list[int], content: bytes = b"", floats: tuple[float, ...] = ()):
    def fill(t, apis):
        t.dtype = apis.types_pb2.DataType.Value(dtype)
        for d in dims:
            t.tensor_shape.dim.add().size = d
        if content:
            t.tensor_content = content
        t.float_val.extend(floats)
    return fill


@pytest.mark.tensorflow
@pytest.mark.parametrize("fill, message", [
    (_proto("DT_FLOAT", [1, 64], content=b"\0" * 255), "whole number"),
    (_proto("DT_STRING", [1, 64], content=b"\0" * 256), "string_val"),
    (_proto("DT_FLOAT", [-1, 64], floats=(1.0,)), "negative"),
    (_proto("DT_FLOAT", [2**40, 64], floats=(1.0,)), "max_request_elements"),
    (_proto("DT_FLOAT", [2_000_000, 8, 8, 2], floats=(1.0,)), "max_request_elements"),  # the 49-byte request
])
def test_hostile_tensor_protos_are_invalid_argument(server, fill, message):
    """Issue 16 #7/#8: these were UNKNOWN with a raw numpy error, or allocated ~1 GB first."""
    code, details = grpc_predict(server, fill)
    assert code == "INVALID_ARGUMENT" and message in details
    assert grpc_predict(server, _proto("DT_FLOAT", [1, 64], floats=(1.0,)))[0] == "OK"  # still serving


@pytest.mark.tensorflow
def test_grpc_message_over_the_limit_is_refused(server):
    code, _ = grpc_predict(server, _proto("DT_FLOAT", [1, 64], content=b"\0" * (2 << 20)))
    assert code == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("body, message", [
    (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (json.dumps({"instances": [[True] * 64]}).encode(), "true/false"),
    (b'{"instances": [[1e400' + b", 1.0" * 63 + b"]]}", "does not fit in a double"),
    (b"\xff\xfe{", "JSON Parse error"),
])
def test_bad_json_is_400_with_a_reason(server, body, message):
    """Issue 16 #7 and the JSON note: deep nesting closed the connection; true and 1e400 became floats."""
    status, answer = post(server.rest_port, "/v1/models/add:predict", body)
    assert status == 400 and message in json.loads(answer)["error"]


def test_rest_body_over_the_limit_is_refused_before_it_is_read(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")


def test_stalled_clients_are_dropped_after_the_read_timeout(server):
    """Issue 16 #8: a client that announces a body and never sends it held a server thread for good."""
    socks = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        for sock in socks:  # read_timeout_s=0.5: the server closes; 10 s is only a hang guard
            assert sock.recv(4096) == b""
    finally:
        for sock in socks:
            sock.close()
    assert post(server.rest_port, "/v1/models/add:predict",
                json.dumps({"instances": [[1.0] * 64]}).encode())[0] == 200


def test_requests_beyond_max_concurrent_are_refused_at_once(add, slow):
    with ModelServer({"slow": slow(add, 1.0)}, grpc_port=None, max_concurrent_requests=1) as srv:
        body = json.dumps({"instances": [[1.0] * 64]}).encode()
        first = threading.Thread(target=post, args=(srv.rest_port, "/v1/models/slow:predict", body))
        first.start()
        try:
            for _ in range(200):  # wait (bounded) until the first request is in flight
                if srv._rest.in_flight:
                    break
                time.sleep(0.01)
            status, answer = post(srv.rest_port, "/v1/models/slow:predict", body)
        finally:
            first.join(timeout=30)
    assert status == 429 and "max_concurrent_requests=1" in json.loads(answer)["error"]


def test_nan_outputs_are_tf_serving_literals_or_refused(add):
    body = json.dumps({"instances": [[1.0] * 64]}).encode()
    with ModelServer({"nan": Constant(add, float("nan"))}, grpc_port=None) as srv:
        status, answer = post(srv.rest_port, "/v1/models/nan:predict", body)
        assert status == 200 and answer.startswith(b'{"predictions": [[NaN')  # as TF Serving writes it
    with ModelServer({"nan": Constant(add, float("nan"))}, grpc_port=None, rest_nan="refuse") as srv:
        status, answer = post(srv.rest_port, "/v1/models/nan:predict", body)
        assert status == 500 and "strict JSON" in json.loads(answer)["error"]


def test_a_rest_client_over_the_size_limit_is_told_the_body_size(server, add):
    """A 640x640 image batch as JSON is tens of MB: the reset alone did not say why."""
    from kit.engines.tfserving import TFServingEngine
    from kit.errors import KitError

    big = np.ones((5000, 64), np.float32)  # about 1.3 MB of JSON, over the fixture's 1 MB
    with TFServingEngine(f"http://127.0.0.1:{server.rest_port}", "add") as client:
        try:
            client.predict({n.name: big for n in client.input_specs})
        except KitError as exc:
            message = str(exc)
        else:
            pytest.fail("a body over max_request_bytes was answered")
    assert "MB" in message and "max_request_bytes" in message, message

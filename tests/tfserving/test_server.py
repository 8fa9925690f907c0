"""TFServingEngine against ``kit serve`` over gRPC and REST: versions, labels, metadata, errors, deadlines."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.engines.tfserving import TFServingEngine, parse_url
from kit.errors import ConfigError, DeadlineExceeded, InputError, ModelLoadError, Overloaded
from kit.testing import make_mlp_model, run_threads
from kit.tfserving.server import ModelServer, ServerConfig, server_for_paths
from kit.tfserving.sources import StaticModels
from kit.tfserving.versions import ModelRegistry, VersionPolicy

PROTOCOLS = ("grpc", "rest")


@pytest.fixture(scope="module")
def engines(mlp_onnx, add_onnx, tmp_path_factory):
    mlp2 = make_mlp_model(tmp_path_factory.mktemp("tfs") / "mlp2.onnx", seed=1)
    made = {"v1": OnnxRuntimeEngine(mlp_onnx), "v2": OnnxRuntimeEngine(mlp2), "add": OnnxRuntimeEngine(add_onnx)}
    yield made
    for engine in made.values():
        engine.close()


@pytest.fixture(scope="module")
def server(engines, slow):
    models = {"mlp": {1: engines["v1"], 2: engines["v2"]}, "add": engines["add"],
              "slow": slow(engines["add"], 1.5)}
    with ModelServer(models, labels={"mlp": {"stable": 1, "canary": 2}}) as srv:
        yield srv


def url_of(server, protocol):
    return server.grpc_url if protocol == "grpc" else server.rest_url


@pytest.fixture()
def features():
    return np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("selector, expected", [({}, "v2"), ({"version": 1}, "v1"), ({"version": 2}, "v2"),
                                                ({"label": "stable"}, "v1"), ({"label": "canary"}, "v2")])
def test_predict_selects_version_and_label(server, engines, features, protocol, selector, expected):
    with TFServingEngine(url_of(server, protocol), "mlp", **selector) as remote:
        out = remote.predict({"features": features})
        assert remote.served_version == int(expected[1])
    want = engines[expected].predict({"features": features})["probabilities"]
    assert list(out) == ["probabilities"] and out["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(out["probabilities"], want)  # both wire formats are lossless for float32


def test_rest_row_format_and_model_in_url(server, engines, features):
    with TFServingEngine(f"{server.rest_url}/v1/models/mlp/labels/stable", rest_format="row") as remote:
        out = remote.predict({"features": features})
    np.testing.assert_array_equal(out["probabilities"], engines["v1"].predict({"features": features})["probabilities"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metadata_specs_and_status(server, protocol):
    with TFServingEngine(url_of(server, protocol), "mlp") as remote:
        (spec,) = remote.input_specs
        assert (spec.name, spec.dtype, spec.shape) == ("features", np.dtype(np.float32), ("batch", 16))
        assert [s.name for s in remote.output_specs] == ["probabilities"]
        meta = remote.metadata()
        assert meta["model_spec"]["name"] == "mlp" and meta["model_spec"]["version"] == "2"
        signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["method_name"] == "tensorflow/serving/predict"
        assert signature["inputs"]["features"]["dtype"] == "DT_FLOAT"
        assert [(r["version"], r["state"]) for r in remote.model_status()] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    with TFServingEngine(url_of(server, protocol), "mlp", label="stable") as remote:
        assert [r["version"] for r in remote.model_status()] == [1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("selector, message", [({"model_name": "nope"}, "Servable not found"),
                                               ({"model_name": "mlp", "version": 7}, "Specific(mlp, 7)"),
                                               ({"model_name": "mlp", "label": "beta"}, "label: beta"),
                                               ({"model_name": "mlp", "signature_name": "other"}, "other")])
def test_missing_model_version_label_signature(server, protocol, selector, message):
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TFServingEngine(url_of(server, protocol), **selector)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("bad", ["name", "dtype", "shape"])
def test_wrong_input_is_input_error_listing_expectation(server, features, protocol, bad):
    feeds = {"name": {"feats": features}, "dtype": {"features": features.astype(np.float64)},
             "shape": {"features": features[:, :5]}}[bad]
    with TFServingEngine(url_of(server, protocol), "mlp") as remote:
        with pytest.raises(InputError, match=r"expects features: float32\[batch, 16\]"):
            remote.predict(feeds)
        remote.predict({"features": features})  # the engine is still usable


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_deadline_exceeded_then_next_call_is_clean(server, protocol):
    x = np.ones((1, 64), np.float32)
    with TFServingEngine(url_of(server, protocol), "slow", timeout_s=0.1) as remote:
        start = time.perf_counter()
        with pytest.raises(DeadlineExceeded):
            remote.predict({"x": x})
        assert time.perf_counter() - start < 1.2  # gave up at the deadline, not when the 1.5 s answer came
        remote.timeout_s = 5.0
        np.testing.assert_array_equal(remote.predict({"x": x})["y"], x + 1)  # no stale answer read


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_concurrent_clients_get_their_own_answers(server, engines, protocol):
    with TFServingEngine(url_of(server, protocol), "mlp", version=1) as remote:
        def worker(seed: int) -> None:
            x = np.random.default_rng(seed).standard_normal((2, 16)).astype(np.float32)
            want = engines["v1"].predict({"features": x})["probabilities"]
            for _ in range(15):
                np.testing.assert_array_equal(remote.predict({"features": x})["probabilities"], want)

        run_threads(worker, 4)


def test_rest_wire_format_matches_tf_serving(server):
    def call(path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(server.rest_url + path, data=data, method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, payload = call("/v1/models/add:predict", {"instances": [[0.0] * 64, [1.0] * 64]})
    assert status == 200 and payload["predictions"] == [[1.0] * 64, [2.0] * 64]
    status, payload = call("/v1/models/add/versions/1:predict", {"inputs": {"x": [[2.0] * 64]}})
    assert status == 200 and payload["outputs"] == [[3.0] * 64]
    status, payload = call("/v1/models/mlp/labels/canary")
    assert status == 200 and payload == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    status, payload = call("/v1/models/mlp/metadata")
    dims = payload["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["features"][
        "tensor_shape"]["dim"]
    assert status == 200 and dims == [{"size": "-1", "name": "batch"}, {"size": "16", "name": ""}]
    assert call("/v1/models/nope:predict", {"instances": [1.0]}) == (
        404, {"error": "Servable not found for request: Latest(nope)"})
    assert call("/v1/models/add:predict", {"instances": [[1.0]], "inputs": [[1.0]]})[0] == 400
    assert call("/v1/models/add:predict", {"instances": [[1.0, 2.0], [1.0]]})[0] == 400  # ragged
    assert call("/v1/models/add:classify", {"examples": []})[0] == 501


def test_stopped_server_is_unavailable(engines, features):
    srv = ModelServer({"mlp": engines["v1"]}).start()
    remotes = [TFServingEngine(srv.grpc_url, "mlp", timeout_s=2), TFServingEngine(srv.rest_url, "mlp", timeout_s=2)]
    srv.stop()
    for remote in remotes:
        with pytest.raises(Overloaded, match="unavailable"):
            remote.predict({"features": features})
        remote.close()
    assert not engines["v1"].closed  # the server lends predictors; it closes only its own


def test_configs_are_checked_before_anything_runs(engines):
    with pytest.raises(ConfigError):
        ServerConfig(grpc_port=None, rest_port=None)
    with pytest.raises(ConfigError):
        ServerConfig(rest_port=70000)
    with pytest.raises(ConfigError, match="not served"):
        StaticModels({"mlp": {1: engines["v1"]}}, labels={"mlp": {"stable": 2}})
    with pytest.raises(ConfigError):
        TFServingEngine("ftp://localhost:8500", "mlp")
    with pytest.raises(ConfigError, match="not both"):
        TFServingEngine("http://localhost:8501", "mlp", version=1, label="stable")
    with pytest.raises(ConfigError, match="URL names"):
        TFServingEngine("http://localhost:8501/v1/models/a", "b")
    assert parse_url("grpc://h/digits/versions/3") == {"scheme": "grpc", "host": "h", "port": 8500,
                                                        "name": "digits", "version": 3, "label": None}


def test_registry_models_are_served_with_their_labels(mlp_onnx, engines, features, tmp_path):
    registry = ModelRegistry(tmp_path / "mlp", "mlp", VersionPolicy.all())
    registry.register(mlp_onnx, version=1)
    registry.register(make_mlp_model(tmp_path / "v2.onnx", seed=1), version=2)
    registry.poll()
    registry.set_label("stable", 1)
    with registry, ModelServer(registry, rest_port=None) as srv:
        with TFServingEngine(srv.grpc_url, "mlp", label="stable") as remote:
            want = engines["v1"].predict({"features": features})["probabilities"]
            np.testing.assert_array_equal(remote.predict({"features": features})["probabilities"], want)
            registry.set_label("stable", 2)  # a label move is seen by the next request
            want = engines["v2"].predict({"features": features})["probabilities"]
            np.testing.assert_array_equal(remote.predict({"features": features})["probabilities"], want)


def test_kit_serve_paths_become_versions(mlp_onnx, engines, features, tmp_path):
    mlp2 = make_mlp_model(tmp_path / "mlp2.onnx", seed=1)
    srv = server_for_paths([str(mlp_onnx), str(mlp2)], name="digits", labels=["stable=1"], grpc_port=None)
    with srv, TFServingEngine(srv.rest_url, "digits", label="stable") as remote:
        assert remote.served_version == 1
        np.testing.assert_array_equal(remote.predict({"features": features})["probabilities"],
                                      engines["v1"].predict({"features": features})["probabilities"])
    with pytest.raises(ConfigError, match="LABEL=VERSION"):
        server_for_paths([str(mlp_onnx)], labels=["stable"])


def test_rest_client_and_server_need_no_tensorflow(mlp_onnx):
    """On a machine without TensorFlow (the ORT-only GPU image), REST works and gRPC says what to install."""
    import subprocess
    import sys

    script = f"""
import sys
sys.modules["tensorflow"] = sys.modules["tensorflow_serving"] = None  # imports of them now fail
import numpy as np
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.engines.tfserving import TFServingEngine
from kit.errors import MissingDependencyError
from kit.tfserving.server import ModelServer
engine = OnnxRuntimeEngine({str(mlp_onnx)!r})
x = np.ones((2, 16), np.float32)
with ModelServer({{"m": engine}}, grpc_port=None) as srv, TFServingEngine(srv.rest_url, "m") as remote:
    got = remote.predict({{"features": x}})["probabilities"]
    assert (got == engine.predict({{"features": x}})["probabilities"]).all()
try:
    TFServingEngine("grpc://127.0.0.1:1", "m")
except MissingDependencyError as exc:
    assert "tensorflow-serving-api" in str(exc)
    print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_serve_forever_stops_on_request(engines):
    srv = ModelServer({"add": engines["add"]}, grpc_port=None).start()
    threading.Timer(0.2, srv.request_stop).start()
    srv.serve_forever()
    assert srv.rest_port is None and not engines["add"].closed

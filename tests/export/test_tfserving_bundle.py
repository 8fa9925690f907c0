"""``kit export --target tfserving``: every file parsed with TF Serving's protos, the bundle served by
``kit serve --model-config-file`` answering as the model does in-process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kit.export import export, verify
from kit.export.bundle import MANIFEST

pytestmark = pytest.mark.tensorflow

CONFIG = {"max_batch_size": 8, "batch_timeout_micros": 2000, "allowed_batch_sizes": [2, 8],
          "intra_op_num_threads": 2, "inter_op_num_threads": 1, "warmup_batch_sizes": [1, 4],
          "labels": {"stable": 3}, "version": 3, "rest_port": 9501,
          "metrics": {"p95_ms": 1.25, "samples_per_s": 812.0}, "environment": {"cpu_model": "measured-here"}}


def _feeds(rows: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, 4)).astype(np.float32), "ids": np.arange(rows, dtype=np.int32)}


@pytest.fixture(scope="module")
def bundle(dense_savedmodel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg")
    config = folder / "best_config.json"
    config.write_text(json.dumps(CONFIG))
    np.savez(folder / "inputs.npz", **_feeds(6, 42))  # the user's inputs make the warm-up records
    return export(dense_savedmodel, "tfserving", "dense", tmp_path_factory.mktemp("out") / "bundle", config,
                  data=folder / "inputs.npz")


def test_layout_and_manifest(bundle, dense_savedmodel):
    root = bundle.path
    on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = bundle.manifest
    assert sorted(manifest["files"]) == on_disk == sorted(bundle.files)
    assert {"models.config", "batching_parameters.txt", "monitoring.config", "serve.sh",
            "dense/3/saved_model.pb", "dense/3/assets.extra/tf_serving_warmup_requests"} <= set(on_disk)
    assert verify(root) == []
    assert manifest["target"] == "tfserving" and manifest["model"]["source"] == str(dense_savedmodel)
    assert manifest["measured"]["figures"] == {"p95_ms": 1.25, "samples_per_s": 812.0}
    assert manifest["measured"]["environment"] == {"cpu_model": "measured-here"}
    assert manifest["exported_on"]["cpu_model"]
    (root / "serve.sh").write_text((root / "serve.sh").read_text() + "\n")
    assert verify(root) == ["serve.sh"]
    (root / "serve.sh").write_text((root / "serve.sh").read_text()[:-1])


def test_models_config_parses_with_tf_serving_protos(bundle):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    server = text_format.Parse((bundle.path / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    (entry,) = server.model_config_list.config
    assert entry.name == "dense" and entry.model_platform == "tensorflow"
    assert entry.base_path == str(bundle.path / "dense")
    assert list(entry.model_version_policy.specific.versions) == [3]
    assert dict(entry.version_labels) == {"stable": 3}


def test_batching_monitoring_and_warmup_files(bundle):
    from google.protobuf import text_format

    from kit.tfserving import batching_parameters
    from kit.tfserving.warmup import read_tfserving_warmup

    batching = batching_parameters.read(bundle.path / "batching_parameters.txt")
    assert (batching.max_batch_size, batching.batch_timeout_micros, batching.allowed_batch_sizes) == (8, 2000, (2, 8))
    monitoring = (bundle.path / "monitoring.config").read_text()
    assert 'path: "/monitoring/prometheus/metrics"' in monitoring and "enable: true" in monitoring
    from kit.export.tfserving import monitoring_config_text
    assert text_format.Parse(monitoring, type(_monitoring_message())()).prometheus_config.enable
    assert monitoring == monitoring_config_text()
    requests = read_tfserving_warmup(bundle.path / "dense" / "3", run=True)  # checked against the signature, run
    assert [r.inputs["x"].tensor_shape.dim[0].size for r in requests] == [1, 4]
    import tensorflow as tf
    np.testing.assert_array_equal(tf.make_ndarray(requests[1].inputs["x"]), _feeds(6, 42)["x"][:4])


def _monitoring_message():
    """TF Serving's ``MonitoringConfig`` (monitoring_config.proto, not shipped by tensorflow-serving-api),
    declared here independently of the writer, field numbers as TF Serving defines them."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    fdp = descriptor_pb2.FileDescriptorProto(name="t.proto", package="tensorflow.serving", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    prom = fdp.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    mon = fdp.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                  type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))()


def test_serve_sh_holds_the_command_line_the_config_implies(bundle):
    script = (bundle.path / "serve.sh").read_text()
    assert script.startswith("#!/bin/sh") and (bundle.path / "serve.sh").stat().st_mode & 0o111
    for flag in ("tensorflow_model_server", "--port=8500", "--rest_api_port=9501",
                 '--model_config_file="$HERE/models.config"', "--enable_batching=true",
                 '--batching_parameters_file="$HERE/batching_parameters.txt"',
                 "--tensorflow_intra_op_parallelism=2", "--tensorflow_inter_op_parallelism=1",
                 '--monitoring_config_file="$HERE/monitoring.config"', "--enable_model_warmup=true",
                 "--allow_version_labels_for_unavailable_models=true"):
        assert flag in script, flag
    subprocess.run(["sh", "-n", str(bundle.path / "serve.sh")], check=True)  # valid shell


def test_kit_serve_answers_as_the_model_does_in_process(bundle, dense_savedmodel):
    from kit.engines.registry import create_engine
    from kit.engines.tfserving import TFServingEngine
    from kit.serve.batching import DynamicBatcher
    from kit.tfserving.from_config import server_from_config

    with create_engine(dense_savedmodel) as local:
        expected = [local.predict(_feeds(rows, seed)) for seed, rows in enumerate((1, 3, 8))]
    with server_from_config(bundle.path / "models.config", grpc_port=0, rest_port=0) as server:
        registry = server.source._registries["dense"]
        assert registry.served_versions == [3] and registry.labels == {"stable": 3}
        served = registry._state.slots[3].predictor  # batching parameters applied, as TF Serving would
        assert isinstance(served, DynamicBatcher) and served.config.allowed_batch_sizes == (2, 8)
        for url, selector in ((server.grpc_url, {"label": "stable"}), (server.rest_url, {"version": 3}),
                              (server.grpc_url, {})):
            with TFServingEngine(url, "dense", **selector) as remote:
                for (seed, rows), want in zip(enumerate((1, 3, 8)), expected):
                    got = remote.predict(_feeds(rows, seed))
                    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)
                    np.testing.assert_array_equal(got["n"], want["n"])


@pytest.mark.slow
def test_kit_serve_command_line_serves_the_bundle(bundle, dense_savedmodel):
    from kit.engines.registry import create_engine
    from kit.engines.tfserving import TFServingEngine

    proc = subprocess.Popen([sys.executable, "-m", "kit.cli", "serve", "--model-config-file",
                             str(bundle.path / "models.config"), "--grpc-port", "0", "--rest-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=Path(__file__).parents[2])
    try:
        line = proc.stdout.readline()
        match = re.search(r"(grpc://[\d.]+:\d+)", line)
        assert match, line
        assert "dense [3]" in line
        with create_engine(dense_savedmodel) as local, TFServingEngine(match[1], "dense", label="stable") as remote:
            sent = _feeds(5, 7)
            np.testing.assert_allclose(remote.predict(sent)["y"], local.predict(sent)["y"], rtol=1e-6, atol=1e-6)
    finally:
        proc.terminate()
        deadline = time.time() + 30
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()

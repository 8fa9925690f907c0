"""The registry with ONNX external data and platforms; ``kit serve --model-config-file`` refusals;
``save_artifacts``; the ``kit export`` command line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from kit.cli import main
from kit.errors import ConfigError
from kit.tfserving.modelconfig import read_models_config
from kit.tfserving.versions import ModelRegistry


def test_registry_copies_external_data_and_names_the_platform(external_onnx, mlp_onnx, tmp_path):
    registry = ModelRegistry(tmp_path / "mlp", "mlp")
    try:
        assert registry.register(external_onnx) == 1
        assert sorted(p.name for p in (tmp_path / "mlp" / "1").iterdir()) == ["mlp_ext.weights", "model.onnx"]
        assert registry.served_versions == [1]
        sent = {"features": np.ones((2, 16), np.float32)}
        from kit.engines.registry import create_engine

        with create_engine(mlp_onnx) as source:
            want = source.predict(sent)["probabilities"]
        np.testing.assert_array_equal(registry.predict(sent)["probabilities"], want)
        registry.set_label("stable", 1)
        (entry,) = read_models_config(registry.write_config(tmp_path / "models.config"))
        assert entry["model_platform"] == "onnx"
    finally:
        registry.close()
    pinned = ModelRegistry(tmp_path / "mlp", "mlp", platform="tensorflow")
    try:
        assert pinned.model_config().model_platform == "tensorflow"  # an explicit platform is kept
    finally:
        pinned.close()


def test_serving_a_config_whose_platform_does_not_match_fails_loudly(mlp_onnx, tmp_path):
    from kit.tfserving.from_config import registries_from_config

    registry = ModelRegistry(tmp_path / "mlp", "mlp")
    registry.register(mlp_onnx)
    registry.close()
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "mlp" base_path: "{tmp_path / "mlp"}" '
                      f'model_platform: "tensorflow" }} }}')
    with pytest.raises(ConfigError, match="no loadable version.*platform 'tensorflow'"):
        registries_from_config(config)
    config.write_text(config.read_text().replace('"tensorflow"', '"onnx"'))
    (registry,) = registries_from_config(config)
    try:
        assert registry.served_versions == [1]
    finally:
        registry.close()
    config.write_text("model_config_list { config { nme: 1 } }")
    with pytest.raises(ConfigError, match="not a TensorFlow Serving models.config"):
        registries_from_config(config)


def test_save_artifacts(external_onnx, tmp_path, monkeypatch):
    from kit.artifacts import ModelArtifact
    from kit.export import ExportConfig, links_html, read_config, save_artifacts, verify
    from kit.serve.batching import BatchingConfig

    monkeypatch.setenv("KIT_RESULTS_PATH", str(tmp_path / "run" / "05_batching.results.json"))
    parent = ModelArtifact.from_path(external_onnx)
    picked = parent.derive(external_onnx, "quantize_dynamic", params={"weight_type": "int8"})
    extra = tmp_path / "models.config"
    extra.write_text("model_config_list {}")
    config = ExportConfig(max_batch_size=8, batch_timeout_micros=1000, metrics={"p95_ms": 2.0})
    records = save_artifacts("05_batching", models={"picked": picked}, config=config,
                             batching=BatchingConfig(max_batch_size=8, batch_timeout_micros=1000),
                             files={"models.config": extra}, exports={"triton": picked}, name="mlp")
    folder = tmp_path / "run" / "artifacts" / "05_batching"
    files = {r["file"] for r in records}
    assert files == {"artifacts/05_batching/picked/mlp_ext-quantize_dynamic/mlp_ext-quantize_dynamic.onnx",
                     "artifacts/05_batching/picked/mlp_ext-quantize_dynamic/mlp_ext.weights",
                     "artifacts/05_batching/best_config.json", "artifacts/05_batching/batching_parameters.txt",
                     "artifacts/05_batching/models.config", "artifacts/05_batching/triton/MANIFEST.json",
                     "artifacts/05_batching/triton/mlp/config.pbtxt", "artifacts/05_batching/triton/mlp/1/model.onnx",
                     "artifacts/05_batching/triton/mlp/1/mlp_ext.weights"}
    assert all((tmp_path / "run" / f).is_file() for f in files)
    assert any("quantize_dynamic(weight_type=int8)" in r["lineage"] for r in records)
    saved = read_config(folder / "best_config.json")
    assert saved.environment["cpu_model"]  # measured here: this process's environment is recorded
    assert saved == dataclasses.replace(config, environment=saved.environment)
    assert verify(folder / "triton") == []
    with pytest.raises(ConfigError, match="labels"):  # a refused export stops before anything is written
        save_artifacts("08_autotune", config={"labels": {"stable": 1}}, exports={"triton": picked},
                       files={"models.config": extra})
    assert not (tmp_path / "run" / "artifacts" / "08_autotune" / "models.config").exists()
    assert json.loads((folder / "ARTIFACTS.json").read_text()) == records
    assert 'href="artifacts/05_batching/best_config.json"' in links_html(records)


def test_export_command_line(mlp_onnx, tmp_path, capsys):
    config = tmp_path / "best_config.json"
    config.write_text(json.dumps({"max_batch_size": 4, "batch_timeout_micros": 100}))
    out = tmp_path / "repo"
    assert main(["export", "--model", str(mlp_onnx), "--config", str(config), "--target", "triton",
                 "--name", "mlp", "--out", str(out)]) == 0
    assert "tritonserver --model-repository" in capsys.readouterr().out
    assert (out / "mlp" / "config.pbtxt").is_file()
    assert main(["export", "--model", str(mlp_onnx), "--target", "triton", "--name", "mlp", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kit: error:") and "--force" in err and err.count("\n") == 1
    assert main(["export", "--model", str(mlp_onnx), "--target", "tfserving", "--name", "mlp",
                 "--out", str(tmp_path / "tfs")]) == 2
    assert "--target triton" in capsys.readouterr().err


def test_serve_command_line_refusals(tmp_path, capsys):
    assert main(["serve", "--model-config-file", str(tmp_path / "missing.config")]) == 2
    assert "cannot read models.config" in capsys.readouterr().err
    assert main(["serve", "x.onnx", "--model-config-file", str(tmp_path / "models.config")]) == 2
    assert "give no model paths" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "--model-config-file" in capsys.readouterr().err

"""``save_artifacts`` under ``kit report``: records in the results JSON, merged across calls, a fresh folder
per run, refused exports skipped with a reason; ``save_registry``'s ``models.config`` served back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kit.artifacts import ModelArtifact, file_sha256
from kit.errors import ConfigError
from kit.export import describe_artifacts, save_artifacts, save_registry, target_for


@pytest.fixture
def report_run(tmp_path, monkeypatch):
    """A run folder as ``kit report`` sets it up: ``KIT_RESULTS_PATH`` names the notebook's results JSON."""
    run = tmp_path / "run"
    run.mkdir()
    results = run / "08_autotune.results.json"
    monkeypatch.setenv("KIT_RESULTS_PATH", str(results))
    return run, results


def test_records_go_into_the_results_json_merged_across_calls(mlp_onnx, report_run, tmp_path):
    run, results = report_run
    results.write_text(json.dumps({"headline": {"x": 1}, "tables": {}}))  # what publish wrote before
    note = tmp_path / "note.txt"
    note.write_text("first")
    first = save_artifacts("08_autotune", models={"best": mlp_onnx}, files={"note.txt": note})
    note.write_text("second, longer")
    second = save_artifacts("08_autotune", config={"max_batch_size": 4}, files={"note.txt": note})
    recorded = json.loads(results.read_text())
    assert recorded["headline"] == {"x": 1}  # publish's figures are kept
    by_file = {r["file"]: r for r in recorded["artifacts"]}
    assert set(by_file) == {r["file"] for r in first + second}
    assert by_file["artifacts/08_autotune/note.txt"]["size_bytes"] == len("second, longer")  # newest record wins
    listing = json.loads((run / "artifacts" / "08_autotune" / "ARTIFACTS.json").read_text())
    assert sorted(listing, key=lambda r: r["file"]) == sorted(recorded["artifacts"], key=lambda r: r["file"])
    for record in listing:  # every record names a file in the run folder, with its own size and sha256
        path = run / record["file"]
        assert path.stat().st_size == record["size_bytes"] and file_sha256(path) == record["sha256"]
    assert "mlp" in by_file["artifacts/08_autotune/best/mlp/mlp.onnx"]["lineage"]


def test_a_new_report_run_starts_the_folder_afresh(mlp_onnx, report_run, tmp_path):
    run, results = report_run
    stale = run / "artifacts" / "08_autotune" / "old" / "model.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run into the same --out")
    (stale.parent.parent / "ARTIFACTS.json").write_text(json.dumps([{"file": "artifacts/08_autotune/old/model.onnx",
                                                                      "size_bytes": 1, "sha256": "", "lineage": ""}]))
    records = save_artifacts("08_autotune", config={})
    assert not stale.exists()
    assert [r["file"] for r in records] == ["artifacts/08_autotune/best_config.json"]
    listing = json.loads((run / "artifacts" / "08_autotune" / "ARTIFACTS.json").read_text())
    assert [r["file"] for r in listing] == ["artifacts/08_autotune/best_config.json"]


def test_outside_a_report_nothing_is_recorded_and_calls_merge(mlp_onnx, tmp_path, monkeypatch):
    monkeypatch.delenv("KIT_RESULTS_PATH", raising=False)
    save_artifacts("05_batching", models={"m": mlp_onnx}, run_dir=tmp_path)
    save_artifacts("05_batching", config={}, run_dir=tmp_path)
    listing = json.loads((tmp_path / "artifacts" / "05_batching" / "ARTIFACTS.json").read_text())
    assert {r["file"] for r in listing} == {"artifacts/05_batching/m/mlp/mlp.onnx",
                                            "artifacts/05_batching/best_config.json"}
    assert not list(tmp_path.glob("*.results.json"))


def test_a_refused_export_is_skipped_with_its_reason(mlp_onnx, report_run, capsys):
    run, results = report_run
    art = ModelArtifact.from_path(mlp_onnx)
    assert target_for(art) == "triton"
    with pytest.raises(ConfigError, match="TF Serving cannot load ONNX"):
        save_artifacts("08_autotune", config={}, exports={"tfserving": art})
    records = save_artifacts("08_autotune", models={"best": art}, config={"max_batch_size": 4},
                             exports={"tfserving": art, "triton": art}, name="mlp", skip_refused=True)
    out = capsys.readouterr().out
    assert "export to tfserving: skipped: TF Serving cannot load ONNX" in out and out.count("\n") == 1
    recorded = json.loads(results.read_text())
    assert "TF Serving cannot load ONNX" in recorded["skipped_sections"]["export to tfserving"]
    files = {r["file"] for r in records}
    assert "artifacts/08_autotune/triton/mlp/config.pbtxt" in files
    assert not any("/tfserving/" in f for f in files)
    assert "artifacts/08_autotune/best/mlp/mlp.onnx" in files


def test_describe_artifacts_counts_files_and_bytes(tmp_path):
    records = [{"file": "artifacts/05_batching/a", "size_bytes": 1_500_000},
               {"file": "artifacts/05_batching/b/c", "size_bytes": 500_000}]
    said = describe_artifacts(records, run_dir=tmp_path)
    assert said == f"saved 2 files (2.0 MB) in {tmp_path / 'artifacts' / '05_batching'}"
    assert describe_artifacts([{"file": "artifacts/x/y", "size_bytes": 2048}], run_dir=tmp_path).startswith(
        "saved 1 file (2.0 kB)")
    assert describe_artifacts([]) == "no artifacts saved"


def test_save_registry_writes_a_models_config_kit_serve_serves(mlp_onnx, tmp_path, monkeypatch):
    from kit.engines.registry import create_engine
    from kit.tfserving.from_config import registries_from_config
    from kit.tfserving.modelconfig import read_models_config
    from kit.tfserving.versions import ModelRegistry, VersionPolicy

    monkeypatch.delenv("KIT_RESULTS_PATH", raising=False)
    registry = ModelRegistry(tmp_path / "work" / "mlp", "mlp", VersionPolicy.latest(2))
    try:
        registry.register(mlp_onnx)
        registry.register(mlp_onnx)
        registry.set_label("stable", 2)
        records = save_registry("09_versions_and_resilience", registry, run_dir=tmp_path / "run")
    finally:
        registry.close()
    folder = tmp_path / "run" / "artifacts" / "09_versions_and_resilience"
    assert {r["file"] for r in records} == {"artifacts/09_versions_and_resilience/mlp/2/model.onnx",
                                            "artifacts/09_versions_and_resilience/models.config"}
    (entry,) = read_models_config(folder / "models.config")
    assert entry["model_platform"] == "onnx" and entry["labels"] == {"stable": 2}
    assert entry["base_path"] == str((folder / "mlp").absolute()) and str(entry["policy"]) == "specific{2}"
    (served,) = registries_from_config(folder / "models.config")
    sent = {"features": np.ones((2, 16), np.float32)}
    try:
        assert served.served_versions == [2] and served.labels == {"stable": 2}
        with create_engine(mlp_onnx) as source:
            np.testing.assert_array_equal(served.predict(sent)["probabilities"], source.predict(sent)["probabilities"])
    finally:
        served.close()


def test_export_config_from_batching_round_trips():
    from kit.export import ExportConfig
    from kit.serve.batching import BatchingConfig

    batching = BatchingConfig(max_batch_size=8, batch_timeout_micros=2000, max_enqueued_batches=32,
                              num_batch_threads=2, allowed_batch_sizes=(4, 8))
    config = ExportConfig.from_batching(batching, metrics={"best_qps": 120.0})
    assert config.batching_config() == batching and config.metrics == {"best_qps": 120.0}


@pytest.mark.tensorflow
def test_save_registry_names_a_savedmodel_version_tensorflow(dense_savedmodel, tmp_path, monkeypatch):
    from kit.tfserving.from_config import registries_from_config
    from kit.tfserving.modelconfig import read_models_config
    from kit.tfserving.versions import ModelRegistry

    monkeypatch.delenv("KIT_RESULTS_PATH", raising=False)
    registry = ModelRegistry(tmp_path / "work" / "dense", "dense")
    try:
        registry.register(dense_savedmodel)
        registry.set_label("stable", 1)
        save_registry("09_versions_and_resilience", registry, run_dir=tmp_path / "run")
    finally:
        registry.close()
    config = tmp_path / "run" / "artifacts" / "09_versions_and_resilience" / "models.config"
    (entry,) = read_models_config(config)
    assert entry["model_platform"] == "tensorflow"
    (served,) = registries_from_config(config, warmup=False)
    try:
        out = served.predict({"x": np.ones((2, 4), np.float32), "ids": np.array([1, 2], np.int32)})
        assert out["n"].tolist() == [2, 3]
    finally:
        served.close()


def test_a_single_file_model_is_copied_under_its_role(report_run, tmp_path):
    """A .tflite model (no folder of its own) failed notebook 05: its role folder was never made."""
    run, _ = report_run
    model = tmp_path / "head.tflite"
    model.write_bytes(b"TFL3-not-really")
    records = save_artifacts("05_batching", models={"tflite": ModelArtifact(path=model, name="head", format="tflite")})
    assert [r["file"] for r in records] == ["artifacts/05_batching/tflite/head.tflite"]
    assert (run / "artifacts" / "05_batching" / "tflite" / "head.tflite").read_bytes() == b"TFL3-not-really"


def test_outside_a_report_exports_land_under_reports_interactive_and_links_reach_them(mlp_onnx, tmp_path,
                                                                                       monkeypatch):
    """Run All in JupyterLab: the bundle path was absolute and the run folder relative, so 08 failed there."""
    from kit.export import links_html

    monkeypatch.delenv("KIT_RESULTS_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    records = save_artifacts("08_autotune", config={"max_batch_size": 4}, exports={"triton": mlp_onnx}, name="mlp")
    assert records and all((tmp_path / "reports" / "interactive" / r["file"]).is_file() for r in records)
    assert 'href="reports/interactive/artifacts/08_autotune/' in links_html(records)

"""Bad input: one-line ConfigError, and a failed export leaves nothing half-written."""

from __future__ import annotations

import json

import pytest

from kit.errors import ConfigError
from kit.export import ExportConfig, export, read_config


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_tfserving_refuses_onnx_and_names_triton(mlp_onnx, tmp_path):
    with pytest.raises(ConfigError) as exc:
        export(mlp_onnx, "tfserving", "mlp", tmp_path / "out")
    assert "--target triton" in _one_line(exc)
    assert not (tmp_path / "out").exists()


def test_non_empty_out_needs_force(mlp_onnx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError) as exc:
        export(mlp_onnx, "triton", "mlp", out)
    assert "--force" in _one_line(exc)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export(mlp_onnx, "triton", "mlp", out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["MANIFEST.json", "mlp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left behind


@pytest.mark.parametrize("target,config,words", [
    ("triton", {"labels": {"stable": 1}}, "labels"),
    ("triton", {"input_names": ["images"]}, "inputs ['images']"),
])
def test_config_the_target_or_model_cannot_take(mlp_onnx, tmp_path, target, config, words):
    with pytest.raises(ConfigError) as exc:
        export(mlp_onnx, target, "mlp", tmp_path / "out", config)
    assert words in _one_line(exc)
    assert not (tmp_path / "out").exists()


@pytest.mark.tensorflow
@pytest.mark.parametrize("target,config,words", [
    ("tfserving", {"graph_optimization_level": "all"}, "graph_optimization_level"),
    ("tfserving", {"instance_count": 2}, "instance_count"),
    ("tfserving", {"provider": "CUDAExecutionProvider"}, "provider"),
    ("triton", {"intra_op_num_threads": 2}, "intra_op_num_threads"),
    ("tfserving", {"input_names": ["x"]}, "the model has ['ids', 'x']"),
])
def test_savedmodel_config_refusals(dense_savedmodel, tmp_path, target, config, words):
    with pytest.raises(ConfigError) as exc:
        export(dense_savedmodel, target, "dense", tmp_path / "out", config)
    assert words in _one_line(exc)
    assert not (tmp_path / "out").exists()


def test_batching_without_a_batch_dimension(fixed_batch_onnx, tmp_path):
    with pytest.raises(ConfigError) as exc:
        export(fixed_batch_onnx, "triton", "fixed", tmp_path / "out", {"max_batch_size": 8})
    assert "no dynamic batch dimension" in _one_line(exc)
    export(fixed_batch_onnx, "triton", "fixed", tmp_path / "ok", {"max_batch_size": 0})


def test_failed_export_leaves_nothing_and_keeps_the_old_bundle(mlp_onnx, tmp_path, monkeypatch):
    import kit.export.triton as triton

    out = tmp_path / "out"
    first = export(mlp_onnx, "triton", "mlp", out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(triton, "write_manifest", broken)
    with pytest.raises(OSError):
        export(mlp_onnx, "triton", "mlp", out, {"max_batch_size": 4}, force=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(OSError):
        export(mlp_onnx, "triton", "mlp", tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert first.path == out


def test_unknown_target_and_model(mlp_onnx, tmp_path):
    with pytest.raises(ConfigError):
        export(mlp_onnx, "torchserve", "mlp", tmp_path / "out")
    with pytest.raises(ConfigError) as exc:
        export("no_such_model", "triton", "x", tmp_path / "out")
    assert "neither a path nor a zoo model" in _one_line(exc)


# ---------------------------------------------------------------- best_config.json


def test_reads_the_tuners_best_config(tmp_path):
    record = {"trial": 7, "objective": {"optimize": "min", "column": "p95_ms", "value": 1.5},
              "config": {"variant": "int8", "provider": "CPUExecutionProvider", "intra_op_num_threads": 2,
                         "graph_optimization_level": "basic", "batch_size": 16, "batch_timeout_micros": 2000},
              "metrics": {"p95_ms": 1.5, "samples_per_s": 900.0}, "study": "s", "storage": None,
              "constraints": {"accuracy_budget": 1.0, "p99_target_ms": None}}
    path = tmp_path / "best_config.json"
    path.write_text(json.dumps(record))
    cfg = read_config(path)
    assert (cfg.max_batch_size, cfg.batch_timeout_micros, cfg.intra_op_num_threads) == (16, 2000, 2)
    assert (cfg.variant, cfg.graph_optimization_level, cfg.metrics["p95_ms"]) == ("int8", "basic", 1.5)
    assert cfg.source["trial"] == 7
    unbatched = dict(record, config={**record["config"], "batch_size": 1, "batch_timeout_micros": 0})
    path.write_text(json.dumps(unbatched))
    assert read_config(path).max_batch_size == 0
    assert ExportConfig.from_dict(cfg.to_dict()) == cfg  # what save_artifacts writes reads back


@pytest.mark.parametrize("data,words", [
    ({"max_batch_size": 8, "threads": 2}, "unknown export config field(s) ['threads']"),
    ({"graph_optimization_level": "max"}, "graph_optimization_level"),
    ({"max_batch_size": 8, "allowed_batch_sizes": [4, 6]}, "allowed_batch_sizes"),
    ({"labels": {"stable": 2}}, "version 2"),
    ({"max_batch_size": 2, "warmup_batch_sizes": [4]}, "exceed max_batch_size"),
    ({"intra_op_num_threads": -1}, "intra_op_num_threads"),
])
def test_bad_config_fields(data, words):
    with pytest.raises(ConfigError) as exc:
        ExportConfig.from_dict(data)
    assert words in _one_line(exc)


def test_unreadable_config(tmp_path):
    bad = tmp_path / "best_config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as exc:
        read_config(bad)
    assert "not JSON" in _one_line(exc)
    with pytest.raises(ConfigError):
        read_config(tmp_path / "missing.json")


def test_data_that_does_not_fit_the_model(mlp_onnx, tmp_path):
    import numpy as np

    with pytest.raises(ConfigError) as exc:
        export(mlp_onnx, "triton", "mlp", tmp_path / "out", data={"image": np.zeros((2, 16), np.float32)})
    assert "need ['features']" in _one_line(exc)
    with pytest.raises(ConfigError) as exc:
        export(mlp_onnx, "triton", "mlp", tmp_path / "out", {"max_batch_size": 8, "warmup_batch_sizes": [8]},
               data={"features": np.zeros((2, 16), np.float32)})
    assert "has 2 rows" in _one_line(exc)
    with pytest.raises(ConfigError) as exc:
        export(mlp_onnx, "triton", "mlp", tmp_path / "out", data={"features": np.zeros((2, 16), np.float64)})
    assert "float64" in _one_line(exc)
    assert not (tmp_path / "out").exists()

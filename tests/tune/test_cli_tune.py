"""``kit tune``: one command that creates or joins a study; bad input is one clear line, exit 2."""

from __future__ import annotations

import json

import numpy as np

from kit.cli import main

SPACE = {"variants": ["fp32", "int8"], "intra_op_num_threads": [1], "graph_optimization_levels": ["all"],
         "batch_sizes": [1, 4], "batch_timeouts_micros": [0]}


def _args(tmp_path, mlp_onnx, *extra):
    data = tmp_path / "inputs.npz"
    if not data.exists():
        np.savez(data, features=np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32))
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return ["tune", "--model", str(mlp_onnx), "--data", str(data), "--space", str(space), "--objective", "p95",
            "--study", "cli", "--sampler", "grid", "--out", str(tmp_path / "out"), "--min-duration-s", "0.01", *extra]


def test_kit_tune_runs_a_grid_and_exports_the_best(tmp_path, mlp_onnx, capsys):
    assert main(_args(tmp_path, mlp_onnx, "--accuracy-budget", "5")) == 0
    out = capsys.readouterr().out
    assert "fairness: measurement serialized" in out and "4 trials in the study (4 complete" in out
    best = json.loads((tmp_path / "out" / "best_config.json").read_text())
    assert best["study"] == "cli" and best["config"]["batch_size"] in (1, 4)
    # without labels, the drop is top-1 disagreement with fp32: fp32 itself drops 0 points
    assert main(_args(tmp_path, mlp_onnx, "--accuracy-budget", "5")) == 0  # nothing left to run: joins, reports
    assert "this run: 0 in" in capsys.readouterr().out


def test_kit_tune_bad_input_is_one_clear_line(tmp_path, mlp_onnx, capsys):
    assert main(_args(tmp_path, mlp_onnx, "--accuracy-budget", "none", "--trials", "1")) == 0
    capsys.readouterr()
    SPACE["batch_sizes"] = [1, 8]
    try:
        assert main(_args(tmp_path, mlp_onnx, "--accuracy-budget", "none", "--trials", "1")) == 2
    finally:
        SPACE["batch_sizes"] = [1, 4]
    err = capsys.readouterr().err
    assert err.startswith("kit: error: ") and "another search space (batch_size: study [1, 4] != [1, 8])" in err
    assert main(_args(tmp_path, mlp_onnx, "--storage", "sqlite:////no/such/folder/x.db")) == 2
    assert "cannot open the study" in capsys.readouterr().err
    assert main(_args(tmp_path, mlp_onnx, "--model", "no_such_zoo_model")) == 2
    assert "neither an .onnx file nor a zoo model" in capsys.readouterr().err

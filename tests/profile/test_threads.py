"""Thread sweeps: grid, default point, best vs default, failed points recorded, TF in child processes."""

from __future__ import annotations

import numpy as np
import pytest

from kit.errors import ConfigError, ModelLoadError
from kit.profile.threads import (
    ThreadSweepConfig,
    sweep_frame,
    sweep_ort_threads,
    sweep_tf_threads,
    sweep_tflite_threads,
)

FAST = dict(rounds=2, min_duration_s=0.06, min_queries=4, warmup=1)


def _feeds(batch: int = 4):
    return {"features": np.random.default_rng(0).standard_normal((batch, 16)).astype(np.float32)}


def test_ort_sweep_covers_the_grid_and_the_default(mlp_onnx):
    cfg = ThreadSweepConfig(intra_op_num_threads=(1, 2), inter_op_num_threads=(1, 2), **FAST)
    result = sweep_ort_threads(mlp_onnx, _feeds(), cfg)
    frame = result.to_frame()
    points = set(zip(frame["intra_op_num_threads"], frame["inter_op_num_threads"], frame["execution_mode"]))
    # default + sequential x intra (inter unused) + parallel x intra x inter
    assert points == {(0, 0, "sequential"), (1, 0, "sequential"), (2, 0, "sequential"),
                      (1, 1, "parallel"), (1, 2, "parallel"), (2, 1, "parallel"), (2, 2, "parallel")}
    assert (frame["status"] == "ok").all() and (frame["p50_ms"] > 0).all()
    assert frame["is_default"].sum() == 1 and result.default()["intra_op_num_threads"] == 0
    best = result.best()
    assert best["p50_ms"] == frame["p50_ms"].min()
    assert result.speedup() == pytest.approx(result.default()["p50_ms"] / best["p50_ms"])
    heat = result.heatmap("parallel")
    assert heat.shape == (2, 2) and list(heat.index) == [1, 2]


def test_ort_sweep_records_points_that_fail_and_goes_on(mlp_onnx):
    cfg = ThreadSweepConfig(intra_op_num_threads=(1,), inter_op_num_threads=(1,), execution_modes=("sequential",),
                            **FAST)
    result = sweep_ort_threads(mlp_onnx, {"features": np.zeros((2, 3), np.float32)}, cfg)
    frame = result.to_frame()
    assert (frame["status"] != "ok").all() and frame["status"].str.contains("failed").all()
    with pytest.raises(Exception, match="default point"):
        result.speedup()


@pytest.mark.parametrize("kwargs", [dict(intra_op_num_threads=()), dict(intra_op_num_threads=(-1,)),
                                    dict(inter_op_num_threads=(1.5,)), dict(execution_modes=("fast",)),
                                    dict(rounds=0), dict(min_duration_s=0), dict(warmup=-1)])
def test_bad_sweep_configs_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ThreadSweepConfig(**kwargs)


def test_tflite_thread_counts_must_be_positive(tmp_path):
    with pytest.raises(ConfigError):
        sweep_tflite_threads(tmp_path / "m.tflite", _feeds(), intra_op_num_threads=(0,))


def test_tf_sweep_refuses_a_missing_model_before_starting_children(tmp_path):
    with pytest.raises(ModelLoadError, match="SavedModel directory not found"):
        sweep_tf_threads(tmp_path / "missing_savedmodel", _feeds())


@pytest.mark.slow
@pytest.mark.tensorflow
def test_tf_sweep_records_a_child_that_cannot_load_the_model(tmp_path):
    (tmp_path / "not_a_savedmodel").mkdir()
    cfg = ThreadSweepConfig(intra_op_num_threads=(1,), inter_op_num_threads=(1,), **FAST)
    result = sweep_tf_threads(tmp_path / "not_a_savedmodel", _feeds(), cfg)
    frame = result.to_frame()
    assert len(frame) == 2 and frame["status"].str.contains("not a SavedModel directory").all()


@pytest.mark.slow
@pytest.mark.tensorflow
def test_tf_and_tflite_sweeps_on_the_zoo_digits_model():
    from kit.zoo import get_model, sample_feeds

    feeds = sample_feeds("digits_cnn", batch_size=2)
    cfg = ThreadSweepConfig(intra_op_num_threads=(1,), inter_op_num_threads=(1,), **FAST)
    tf = sweep_tf_threads(get_model("digits_cnn", "savedmodel"), feeds, cfg)
    lite = sweep_tflite_threads(get_model("digits_cnn", "tflite"), feeds, (1, 2), cfg)
    frame = sweep_frame([tf, lite])
    assert (frame["status"] == "ok").all(), frame["status"].tolist()
    assert set(frame["runtime"]) == {"tensorflow", "tflite"}
    assert tf.default()["intra_op_num_threads"] == 0 and tf.speedup() > 0 and lite.speedup() > 0

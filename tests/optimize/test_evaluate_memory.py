"""evaluate(memory=True): peak memory and load time per variant, each measured in its own child process."""

from __future__ import annotations

import numpy as np
import pytest

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError
from kit.optimize.evaluate import EvalConfig, evaluate
from kit.optimize.quantize_onnx import quantize_dynamic

FAST = dict(min_duration_s=0.05, rounds=2, min_queries=3, warmup=1)


def test_memory_columns_per_variant(conv_onnx, tmp_path):
    source = ModelArtifact.from_path(conv_onnx)
    variant = quantize_dynamic(source, out=tmp_path / "d.onnx")
    data = {"gpu_0/data_0": np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)}
    frame = evaluate([variant], source, data, batch_sizes=(1, 2), memory=True, memory_requests=2, memory_rounds=2,
                     **FAST)
    assert list(frame.columns[frame.columns.get_loc("size_mb"):][:6]) == [
        "size_mb", "peak_mem_mb", "peak_mem_mb_low", "peak_mem_mb_high", "memory_rounds", "load_s"]
    assert frame["peak_mem_mb"].notna().all() and (frame["peak_mem_mb"] > 0).all() and (frame["load_s"] > 0).all()
    assert (frame.peak_mem_mb_low <= frame.peak_mem_mb).all() and (frame.peak_mem_mb <= frame.peak_mem_mb_high).all()
    assert (frame.memory_rounds == 2).all()  # two children per variant: the range is its spread
    # one measurement per variant, the same on each of its batch-size rows
    assert frame.groupby("name")["peak_mem_mb"].nunique().eq(1).all()
    record = frame.attrs["memory"][variant.name]  # the first child's stages
    assert record["requests"] == 2
    assert frame.loc[1, "peak_mem_mb_low"] <= record["peak_mb"] <= frame.loc[1, "peak_mem_mb_high"]
    assert {"load_mb", "first_mb", "steady_mb", "baseline_mb", "first_s"} <= set(record)


def test_memory_is_off_by_default_and_its_requests_are_checked(conv_onnx):
    source = ModelArtifact.from_path(conv_onnx)
    data = {"gpu_0/data_0": np.ones((2, 1, 8, 8), np.float32)}
    frame = evaluate([], source, data, batch_sizes=(1,), **FAST)
    assert "peak_mem_mb" not in frame and "memory" not in frame.attrs
    with pytest.raises(ConfigError, match="memory_requests"):
        EvalConfig(memory_requests=-1)
    with pytest.raises(ConfigError, match="memory_rounds"):
        EvalConfig(memory_rounds=0)


def test_a_memory_child_that_fails_leaves_nan_and_its_reason_and_the_others_measured(conv_onnx, tmp_path,
                                                                                      monkeypatch):
    import kit.profile.memory as memory
    from kit.errors import ModelLoadError

    source = ModelArtifact.from_path(conv_onnx)
    variant = quantize_dynamic(source, out=tmp_path / "d.onnx")
    real = memory.measure_memory

    def flaky(model, *args, **kwargs):
        if model.name == variant.name:
            raise ModelLoadError("the child could not load it")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(memory, "measure_memory", flaky)
    data = {"gpu_0/data_0": np.ones((2, 1, 8, 8), np.float32)}
    with pytest.warns(RuntimeWarning, match="not measured"):
        frame = evaluate([variant], source, data, batch_sizes=(1,), memory=True, memory_requests=1,
                         memory_rounds=2, **FAST).set_index("name")
    assert np.isnan(frame.loc[variant.name, "peak_mem_mb"]) and frame.loc[variant.name, "memory_rounds"] == 0
    assert frame.loc[source.name, "memory_rounds"] == 2 and frame.loc[source.name, "peak_mem_mb"] > 0
    assert "could not load" in frame.attrs["memory"][variant.name]["failure"]

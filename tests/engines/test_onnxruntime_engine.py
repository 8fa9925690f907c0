import numpy as np
import pytest

from kit import create_engine
from kit.artifacts import ModelArtifact
from kit.engines.onnxruntime import OnnxRuntimeEngine, OrtOptions
from kit.errors import ConfigError, InputError, ModelLoadError, ProviderUnavailableError, first_line


def test_loads_path_artifact_and_bytes(add_onnx):
    x = {"x": np.zeros((2, 64), np.float32)}
    for source in (add_onnx, str(add_onnx), ModelArtifact.from_path(add_onnx), add_onnx.read_bytes()):
        with OnnxRuntimeEngine(source) as engine:
            np.testing.assert_array_equal(engine.predict(x)["y"], np.ones((2, 64), np.float32))


def test_specs_keep_symbolic_batch(add_onnx):
    with create_engine(add_onnx) as engine:
        (spec,) = engine.input_specs
        assert spec.shape == ("batch", 64) and spec.dtype == np.float32


def test_lists_are_converted_not_refused(add_onnx):
    with create_engine(add_onnx) as engine:
        assert engine.predict({"x": [[0.0] * 64]})["y"].shape == (1, 64)


def test_session_options_are_applied(add_onnx, tmp_path):
    optimized = tmp_path / "opt.onnx"
    engine = create_engine(add_onnx, graph_optimization_level="basic", intra_op_num_threads=1,
                           execution_mode="parallel", optimized_model_filepath=str(optimized))
    assert optimized.exists()
    record = engine.describe()
    assert record["graph_optimization_level"] == "basic" and record["intra_op_num_threads"] == 1
    assert record["providers"] == ["CPUExecutionProvider"] and record["fallback"] == []


@pytest.mark.parametrize("kwargs, needle", [
    ({"graph_optimization_level": "max"}, "graph_optimization_level"),
    ({"execution_mode": "fast"}, "execution_mode"),
    ({"intra_op_num_threads": -1}, "intra_op_num_threads"),
    ({"providers": ()}, "at least one"),
    ({"providers": ("GPUExecutionProvider",)}, "unknown execution provider"),
])
def test_bad_options_are_config_errors(add_onnx, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        OnnxRuntimeEngine(add_onnx, **kwargs)


def test_cuda_requested_on_a_cpu_machine_is_loud(add_onnx):
    from kit.testing import gpu_provider_loads

    if gpu_provider_loads():
        pytest.skip("a GPU provider really loads here")
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        OnnxRuntimeEngine(add_onnx, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    with pytest.warns(RuntimeWarning, match="did not load"):
        engine = OnnxRuntimeEngine(add_onnx, providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
                                   allow_fallback=True)
    assert engine.describe()["fallback"] == ["CUDAExecutionProvider"]
    assert engine.active_providers == ["CPUExecutionProvider"]


def test_provider_with_options_pair_is_accepted():
    options = OrtOptions(providers=("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"}))
    assert options.provider_names == ["CPUExecutionProvider"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        OnnxRuntimeEngine(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelLoadError) as info:
        OnnxRuntimeEngine(bad)
    assert "onnxruntime_src" not in str(info.value) and "::" not in str(info.value)
    with pytest.raises(ModelLoadError, match="directory"):
        OnnxRuntimeEngine(tmp_path)


def test_newer_ir_version_error_says_what_to_do(tmp_path):
    import onnx

    from kit.testing import make_add_model

    path = make_add_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.ir_version = 99
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="ir_version"):
        OnnxRuntimeEngine(path)


def test_first_line_strips_cpp_frames():
    exc = RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load failed:/onnxruntime_src/onnxruntime/core/graph/"
                       "model.cc:256 onnxruntime::Model::Model(onnx::ModelProto&&, const int&) Bad thing\nframe 2")
    assert first_line(exc) == "[ONNXRuntimeError] : 1 : FAIL : Load failed:Bad thing"


def test_multi_input_model_with_odd_names(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("gpu_0/data_0", TensorProto.FLOAT, ["N", 4])
    b = helper.make_tensor_value_info("mask:0", TensorProto.INT64, ["N", 4])
    out1 = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 4])
    out2 = helper.make_tensor_value_info("mask_out", TensorProto.INT64, ["N", 4])
    nodes = [helper.make_node("Cast", ["mask:0"], ["maskf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["gpu_0/data_0", "maskf"], ["sum"]),
             helper.make_node("Identity", ["mask:0"], ["mask_out"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [a, b], [out1, out2]),
                              opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, str(tmp_path / "multi.onnx"))
    with create_engine(tmp_path / "multi.onnx") as engine:
        out = engine.predict({"gpu_0/data_0": np.ones((2, 4), np.float32), "mask:0": np.ones((2, 4), np.int64)})
        assert set(out) == {"sum", "mask_out"} and out["sum"][0, 0] == 2.0
        with pytest.raises(InputError, match="mask:0: int64"):
            engine.predict({"gpu_0/data_0": np.ones((2, 4), np.float32)})


def test_tensorrt_that_cannot_start_is_a_provider_error(add_onnx):
    from kit.testing import gpu_provider_loads

    if gpu_provider_loads():
        pytest.skip("a GPU provider really loads here")
    with pytest.raises(ProviderUnavailableError, match="TensorrtExecutionProvider"):
        OnnxRuntimeEngine(add_onnx, providers=("TensorrtExecutionProvider", "CPUExecutionProvider"))
    with pytest.warns(RuntimeWarning):
        engine = OnnxRuntimeEngine(add_onnx, providers=("TensorrtExecutionProvider", "CPUExecutionProvider"),
                                   allow_fallback=True)
    assert engine.fallback == ["TensorrtExecutionProvider"]

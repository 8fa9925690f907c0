"""Provider discovery, options, choice and IO binding; GPU checks run only where CUDA really loads."""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from kit.engines.iobinding import IoBoundEngine
from kit.engines.onnxruntime import OnnxRuntimeEngine, import_onnxruntime
from kit.engines.providers import (
    CPU,
    CUDA,
    TENSORRT,
    CudaOptions,
    TensorRTOptions,
    discover_providers,
    library_problem,
    probe_provider,
    provider_arg,
    providers_frame,
    validate_provider_names,
    working_providers,
)
from kit.errors import ConfigError, InputError, ProviderUnavailableError
from kit.profile.providers import choose_providers
from kit.testing import gpu_provider_loads, make_add_model

FEATURES = "features"


def _cuda_works() -> bool:
    return any(s.works for s in discover_providers([CUDA])) if CUDA in _listed() else False


def _listed() -> list[str]:
    return import_onnxruntime().get_available_providers()


# -- discovery ---------------------------------------------------------------------------------

def test_discovery_probes_every_listed_provider_and_cpu_works():
    statuses = discover_providers()
    assert [s.name for s in statuses] == _listed()
    cpu = next(s for s in statuses if s.name == CPU)
    assert cpu.works and cpu.reason == "ok" and cpu.session_providers[0] == CPU
    frame = providers_frame(statuses)
    assert set(frame["provider"]) == set(_listed()) and "reason" in frame


def test_listed_gpu_provider_that_cannot_load_is_reported_with_the_loader_reason():
    if CUDA not in _listed():
        pytest.skip("this onnxruntime wheel does not list CUDA")
    if gpu_provider_loads():
        pytest.skip("CUDA really loads here; this test covers machines where it does not")
    (status,) = discover_providers([CUDA])
    assert status.listed and not status.loads and not status.works
    assert status.session_providers in ((), (CPU,))  # ORT's quiet fallback is seen, not believed
    problem = library_problem(CUDA)
    if problem is not None:  # the dynamic loader names the missing library (e.g. libcublasLt.so.13)
        assert status.reason == problem and "cannot be loaded" in problem and ".so" in problem
    else:
        assert "NVIDIA device" in status.reason or "instead" in status.reason
    assert CUDA not in working_providers()


def test_provider_the_wheel_does_not_list_is_reported_not_built():
    status = probe_provider("CoreMLExecutionProvider")
    assert not status.listed and not status.works and "not built" in status.reason


@pytest.mark.parametrize("bad", ["cuda", "CUDA", "CudaExecutionProvider", "NoSuchExecutionProvider", ""])
def test_bad_provider_names_are_config_errors_naming_the_known_ones(bad):
    with pytest.raises(ConfigError, match="unknown execution provider") as info:
        discover_providers([bad])
    assert "CUDAExecutionProvider" in str(info.value)


def test_close_misspelling_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'CUDAExecutionProvider'"):
        validate_provider_names(["cudaexecutionprovider"])


def test_bad_provider_spec_types_are_config_errors():
    with pytest.raises(ConfigError, match="a provider must be"):
        provider_arg(("CUDAExecutionProvider", 3))
    with pytest.raises(ConfigError):
        provider_arg(42)


# -- options -------------------------------------------------------------------------------------

def test_cuda_options_become_ort_provider_options():
    name, opts = CudaOptions(device_id=1, gpu_mem_limit_bytes=2**30, cudnn_conv_algo_search="HEURISTIC",
                             enable_cuda_graph=True).provider()
    assert name == CUDA
    assert opts == {"device_id": "1", "gpu_mem_limit": str(2**30), "arena_extend_strategy": "kNextPowerOfTwo",
                    "cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1",
                    "enable_cuda_graph": "1"}


@pytest.mark.parametrize("kwargs", [dict(device_id=-1), dict(device_id=True), dict(gpu_mem_limit_bytes=0),
                                    dict(cudnn_conv_algo_search="FAST"), dict(arena_extend_strategy="grow")])
def test_bad_cuda_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        CudaOptions(**kwargs)


def test_tensorrt_options_with_engine_cache(tmp_path):
    cache = tmp_path / "trt-cache"
    name, opts = TensorRTOptions(fp16=True, engine_cache_dir=str(cache)).provider()
    assert name == TENSORRT and opts["trt_fp16_enable"] == "1"
    assert opts["trt_engine_cache_enable"] == "1" and opts["trt_engine_cache_path"] == str(cache)
    assert cache.is_dir()


def test_bad_tensorrt_options_are_config_errors(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    for kwargs in (dict(engine_cache_dir=str(afile)), dict(engine_cache_dir=" "), dict(max_workspace_size_bytes=-1)):
        with pytest.raises(ConfigError):
            TensorRTOptions(**kwargs)


# -- choosing -------------------------------------------------------------------------------------

def test_choose_providers_raises_for_a_requested_provider_that_does_not_run(mlp_onnx):
    if _cuda_works():
        pytest.skip("CUDA runs here")
    with pytest.raises(ProviderUnavailableError, match=f"{CUDA}.*allow_fallback"):
        choose_providers(mlp_onnx, [CUDA, CPU])


def test_choose_providers_with_fallback_records_the_unavailable_and_ends_with_cpu(mlp_onnx):
    from kit.profile.scenarios import LoadConfig

    fast = LoadConfig(warmup_queries=1, min_duration_s=0.05, min_queries=3)
    choice = choose_providers(mlp_onnx, [CudaOptions(), CPU], batch_sizes=(1, 4), allow_fallback=True,
                              config=fast, rounds=1)
    assert choice.order[-1] == CPU
    frame = choice.to_frame()
    assert set(frame["batch_size"]) == {1, 4}
    cpu_rows = frame[frame["provider"] == CPU]
    assert (cpu_rows["status"] == "ok").all() and (cpu_rows["samples_per_s"] > 0).all()
    if not _cuda_works():
        assert choice.best == CPU and CUDA in choice.unavailable
        assert frame[frame["provider"] == CUDA]["status"].str.startswith("unavailable").all()
        assert not choice.status_frame().set_index("provider").loc[CUDA, "works"]


def test_choose_providers_rejects_bad_arguments(mlp_onnx):
    with pytest.raises(ConfigError):
        choose_providers(mlp_onnx, [CPU], batch_sizes=(0,))
    with pytest.raises(ConfigError):
        choose_providers(mlp_onnx, [CPU], batch_sizes=(1,), rank_batch_size=8)
    with pytest.raises(ConfigError, match="twice"):
        choose_providers(mlp_onnx, [CPU, CPU])
    with pytest.raises(ConfigError, match="unknown execution provider"):
        choose_providers(mlp_onnx, ["GPU"])


# -- IO binding on CPU (the same code path as on CUDA) ---------------------------------------------

def test_io_binding_matches_plain_predict(mlp_onnx):
    engine = OnnxRuntimeEngine(mlp_onnx)
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    expected = engine.predict({FEATURES: x})["probabilities"]
    with IoBoundEngine(engine, close_engine=False) as bound:
        assert bound.device == "cpu"
        np.testing.assert_allclose(bound.predict({FEATURES: x})["probabilities"], expected, rtol=1e-6)
        on_device = bound.run_on_device(bound.to_device({FEATURES: x}))
        np.testing.assert_allclose(on_device["probabilities"].numpy(), expected, rtol=1e-6)
    assert not engine.closed
    engine.close()


def test_io_binding_with_reused_buffers_refills_in_place(mlp_onnx):
    engine = OnnxRuntimeEngine(mlp_onnx)
    rng = np.random.default_rng(1)
    with IoBoundEngine(engine, reuse_buffers=True, close_engine=False) as bound:
        for batch in (4, 4, 2):
            x = rng.standard_normal((batch, 16)).astype(np.float32)
            got = bound.predict({FEATURES: x})["probabilities"]
            np.testing.assert_allclose(got, engine.predict({FEATURES: x})["probabilities"], rtol=1e-6)
        assert len(bound._bound) == 2  # one set of buffers per input shape
    engine.close()


def test_io_binding_reused_buffers_size_a_state_output_along_its_batch_axis(tmp_path):
    """Outputs ``out [batch]`` and ``new_state [2, batch, 128]`` are sized by ``resolve_shapes``, not axis 0."""
    from onnx_models import make_state_model

    engine = OnnxRuntimeEngine(make_state_model(tmp_path / "vad.onnx"))
    rng = np.random.default_rng(2)
    feeds = {"input": rng.standard_normal((3, 64)).astype(np.float32),
             "state": rng.standard_normal((2, 3, 128)).astype(np.float32), "sr": np.array(16000, np.int64)}
    with IoBoundEngine(engine, reuse_buffers=True, close_engine=False) as bound:
        got = bound.predict(feeds)
    want = engine.predict(feeds)
    assert got["new_state"].shape == (2, 3, 128) and got["out"].shape == (3,)
    np.testing.assert_allclose(got["new_state"], want["new_state"], rtol=1e-6)
    np.testing.assert_allclose(got["out"], want["out"], rtol=1e-5)
    engine.close()


@pytest.mark.parametrize("reuse", [False, True])
def test_io_binding_bad_inputs_raise_input_error(mlp_onnx, reuse):
    with IoBoundEngine(OnnxRuntimeEngine(mlp_onnx), reuse_buffers=reuse) as bound:
        for feeds in ({FEATURES: np.zeros((2, 16), np.float64)}, {"x": np.zeros((2, 16), np.float32)},
                      {FEATURES: np.zeros((2, 3), np.float32)}):
            with pytest.raises(InputError, match="the model expects features: float32"):
                bound.predict(feeds)


def test_io_binding_refuses_other_predictors_and_closed_engines(mlp_onnx):
    with pytest.raises(ConfigError):
        IoBoundEngine(object())
    bound = IoBoundEngine(OnnxRuntimeEngine(mlp_onnx))
    bound.close()
    bound.close()
    from kit.errors import Closed

    with pytest.raises(Closed):
        bound.predict({FEATURES: np.zeros((1, 16), np.float32)})


# -- GPU: these run only where a CUDA session really runs on CUDA ------------------------------------

@pytest.mark.gpu
def test_cuda_session_really_runs_on_cuda_and_matches_cpu(mlp_onnx):
    x = np.random.default_rng(2).standard_normal((32, 16)).astype(np.float32)
    with OnnxRuntimeEngine(mlp_onnx) as cpu, \
            OnnxRuntimeEngine(mlp_onnx, providers=(CudaOptions().provider(), CPU)) as cuda:
        assert cuda.active_providers[0] == CUDA and not cuda.fallback
        np.testing.assert_allclose(cuda.predict({FEATURES: x})["probabilities"],
                                   cpu.predict({FEATURES: x})["probabilities"], rtol=1e-3, atol=1e-5)
    (status,) = discover_providers([CUDA])
    assert status.works and status.session_providers[0] == CUDA


@pytest.mark.gpu
def test_cuda_io_binding_and_cuda_graph_match_cpu(mlp_onnx):
    x = np.random.default_rng(3).standard_normal((32, 16)).astype(np.float32)
    with OnnxRuntimeEngine(mlp_onnx) as cpu:
        expected = cpu.predict({FEATURES: x})["probabilities"]
    with IoBoundEngine(OnnxRuntimeEngine(mlp_onnx, providers=(CudaOptions().provider(), CPU))) as bound:
        assert bound.device == "cuda"
        np.testing.assert_allclose(bound.predict({FEATURES: x})["probabilities"], expected, rtol=1e-3, atol=1e-5)
        out = bound.run_on_device(bound.to_device({FEATURES: x}))["probabilities"]
        assert out.device_name().lower() == "cuda"
    graph = OnnxRuntimeEngine(mlp_onnx, providers=(CudaOptions(enable_cuda_graph=True).provider(), CPU))
    with IoBoundEngine(graph, reuse_buffers=True) as bound:
        assert bound.cuda_graph
        for scale in (1.0, 2.0, 0.5):  # replays must see the new inputs written in place
            with OnnxRuntimeEngine(mlp_onnx) as cpu:
                want = cpu.predict({FEATURES: x * scale})["probabilities"]
            np.testing.assert_allclose(bound.predict({FEATURES: x * scale})["probabilities"], want,
                                       rtol=1e-3, atol=1e-5)
        with pytest.raises(InputError, match="CUDA graph"):
            bound.predict({FEATURES: x[:4]})


@pytest.mark.gpu
def test_cuda_io_binding_with_device_resident_data_is_faster_at_batch_32(tmp_path):
    """Device-resident inputs/outputs skip two PCIe copies of 8 MiB per call; compared interleaved."""
    path = make_add_model(tmp_path / "wide_add.onnx", width=65536)
    x = np.random.default_rng(4).standard_normal((32, 65536)).astype(np.float32)
    with IoBoundEngine(OnnxRuntimeEngine(path, providers=(CUDA, CPU))) as bound:
        plain = bound.engine
        values = bound.to_device({"x": x})
        for _ in range(5):
            plain.predict({"x": x})
            bound.run_on_device(values)
        plain_s, bound_s = [], []
        for _ in range(30):  # interleaved rounds: A B A B ...
            start = time.perf_counter()
            plain.predict({"x": x})
            plain_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            out = bound.run_on_device(values)
            bound_s.append(time.perf_counter() - start)
        np.testing.assert_allclose(out["y"].numpy(), x + 1, rtol=1e-6)
    assert statistics.median(bound_s) < statistics.median(plain_s)

"""Dynamic batcher: routing under concurrency, padding, overload, error isolation, shutdown, validation."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.engines.base import PredictorBase
from kit.errors import Closed, ConfigError, InferenceError, InputError, Overloaded
from kit.serve.batching import BatchingConfig, DynamicBatcher
from kit.specs import TensorSpec


class Echo(PredictorBase):
    """Sleep-based fake engine: returns each row's id (column 0), its sum and its double.

    ``gate`` (an Event) holds every call until set, so tests can fill the queue on purpose;
    rows with a negative id make the call fail like an engine error.
    """

    name = "echo"

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self._input_specs = (TensorSpec("x", np.float32, ("batch", None)),)
        self._output_specs = (TensorSpec("id", np.float32, ("batch",)), TensorSpec("total", np.float32, ("batch",)))
        self.delay_s, self.gate = delay_s, gate
        self.entered = threading.Event()
        self.shapes: list[tuple[int, ...]] = []
        self.inputs: list[np.ndarray] = []

    def predict(self, feeds):
        x = feeds["x"]
        self.shapes.append(x.shape)
        self.inputs.append(x)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if (x[:, 0] < 0).any():
            raise InferenceError("poisoned row in batch")
        return {"id": x[:, 0].copy(), "total": x.sum(axis=1), "double": x * 2}


def rows(ids, width: int = 3) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=np.float32)
    return {"x": np.repeat(ids[:, None], width, axis=1)}


def wait_until(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.001)


@contextlib.contextmanager
def held(engine: Echo, first: dict[str, np.ndarray], **config):
    """A batcher (no batch timeout) whose batch thread is held inside ``engine`` by ``first`` until the engine's
    gate is set, so that the requests a test sends next queue up; yields the batcher and ``first``'s future."""
    with DynamicBatcher(engine, batch_timeout_micros=0, **config) as batcher:
        blocker = batcher.submit(first)
        wait_until(engine.entered.is_set)
        yield batcher, blocker


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=40),
       delays=st.lists(st.floats(0, 0.002), min_size=1, max_size=40),
       max_batch=st.integers(6, 16), timeout_us=st.sampled_from([0, 200, 2000]),
       threads=st.integers(1, 3), use_allowed=st.booleans(), pad=st.booleans())
def test_every_request_gets_exactly_its_rows(sizes, delays, max_batch, timeout_us, threads, use_allowed, pad):
    allowed = tuple(sorted({max(1, max_batch // 4), max(2, max_batch // 2), max_batch})) if use_allowed else ()
    config = BatchingConfig(max_batch_size=max_batch, batch_timeout_micros=timeout_us, num_batch_threads=threads,
                            allowed_batch_sizes=allowed, max_enqueued_batches=1000, pad_variable_length_inputs=pad)
    engine = Echo(delay_s=0.0005)
    next_id = iter(range(1, 10_000))
    requests = []
    for i, n in enumerate(sizes):
        ids = [next(next_id) for _ in range(n)]
        width = 2 + (i % 3) if pad else 3  # variable lengths only when padding joins them
        requests.append((ids, width, delays[i % len(delays)]))

    def client(req):
        ids, width, delay = req
        time.sleep(delay)
        return batcher.predict(rows(ids, width))

    with DynamicBatcher(engine, config) as batcher, ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(client, requests))
        stats = batcher.stats()
    for (ids, width, _), out in zip(requests, results):
        np.testing.assert_array_equal(out["id"], np.asarray(ids, np.float32))
        np.testing.assert_array_equal(out["total"], np.asarray(ids, np.float32) * width)
        assert out["id"].shape == (len(ids),)
    assert stats["rows"] == sum(sizes) and stats["requests"] == len(sizes)
    assert max(s[0] for s in engine.shapes) <= max_batch
    if allowed:
        assert {s[0] for s in engine.shapes} <= set(allowed)


def test_batches_form_from_concurrent_requests_and_stats_count_them():
    gate = threading.Event()
    engine = Echo(gate=gate)
    with held(engine, rows([1]), max_batch_size=8) as (batcher, first):  # the thread is busy with request 1
        later = [batcher.submit(rows([i])) for i in range(2, 9)]
        stats = batcher.stats()
        assert stats["queue_batches"] == 1 and stats["queue_requests"] == 7 and stats["in_flight_requests"] == 1
        gate.set()
        assert first.result()["id"].tolist() == [1.0]
        assert [f.result()["id"].tolist() for f in later] == [[float(i)] for i in range(2, 9)]
        stats = batcher.stats()
    assert stats["batch_size_histogram"] == {1: 1, 7: 1}
    assert stats["batches"] == 2 and stats["mean_batch_rows"] == 4.0
    assert batcher.to_frame()["batches"].sum() == 2


def test_padding_to_the_next_allowed_size_is_stripped_from_results():
    gate = threading.Event()
    engine = Echo(gate=gate)
    with held(engine, rows([100]), max_batch_size=8, allowed_batch_sizes=(2, 4, 8)) as (batcher, blocker):
        a, b = batcher.submit(rows([1, 2])), batcher.submit(rows([3]))
        gate.set()
        assert blocker.result()["id"].tolist() == [100.0]
        assert a.result()["id"].tolist() == [1.0, 2.0] and b.result()["id"].tolist() == [3.0]
        stats = batcher.stats()
    assert [s[0] for s in engine.shapes] == [2, 4]  # 1 row -> 2, 3 rows -> 4
    assert engine.inputs[1][:, 0].tolist() == [1.0, 2.0, 3.0, 3.0]  # padding repeats the last row
    assert stats["padding_rows"] == 2 and stats["padded_size_histogram"] == {2: 1, 4: 1}


def test_variable_length_inputs_are_padded_only_when_asked():
    for pad, expected_calls in ((True, [(1, 3), (2, 5)]), (False, [(1, 3), (1, 2), (1, 5)])):
        gate = threading.Event()
        engine = Echo(gate=gate)
        with held(engine, rows([9], width=3), max_batch_size=4, pad_variable_length_inputs=pad) as (batcher, blocker):
            short, long_ = batcher.submit(rows([1], width=2)), batcher.submit(rows([2], width=5))
            gate.set()
            blocker.result()
            assert short.result()["total"].tolist() == [2.0]  # zero padding leaves the sum alone
            assert long_.result()["total"].tolist() == [10.0]
        assert sorted(engine.shapes) == sorted(expected_calls)


def test_full_queue_rejects_at_once_with_overloaded():
    gate = threading.Event()
    engine = Echo(gate=gate)
    with held(engine, rows([1]), max_batch_size=2, max_enqueued_batches=1) as (batcher, first):
        queued = [batcher.submit(rows([2])), batcher.submit(rows([3]))]  # fills the one queued batch
        with pytest.raises(Overloaded, match="queue is full"):
            batcher.submit(rows([4]))
        assert batcher.stats()["rejected"] == 1
        gate.set()
        assert first.result()["id"].tolist() == [1.0]
        assert [f.result()["id"].tolist() for f in queued] == [[2.0], [3.0]]
        assert batcher.predict(rows([5]))["id"].tolist() == [5.0]  # accepts again once drained


def test_a_failing_batch_fails_only_its_own_requests_with_the_engine_error():
    """TF Serving's behaviour, kept as an option: the whole batch fails with the engine's error."""
    gate = threading.Event()
    engine = Echo(gate=gate)
    with held(engine, rows([1]), max_batch_size=2, max_enqueued_batches=10,
              isolate_failures=False) as (batcher, blocker):
        bad = [batcher.submit(rows([-1])), batcher.submit(rows([2]))]  # one batch, poisoned
        good = [batcher.submit(rows([3])), batcher.submit(rows([4]))]  # the next batch
        gate.set()
        assert blocker.result()["id"].tolist() == [1.0]
        for future in bad:
            with pytest.raises(InferenceError, match="poisoned row"):
                future.result()
        assert [f.result()["id"].tolist() for f in good] == [[3.0], [4.0]]
        assert batcher.predict(rows([5]))["id"].tolist() == [5.0]
        assert batcher.stats()["failed_batches"] == 1


def test_a_bad_request_fails_alone_and_mismatched_requests_never_share_a_batch():
    gate = threading.Event()
    engine = Echo(gate=gate)
    with held(engine, rows([1]), max_batch_size=4) as (batcher, blocker):
        with pytest.raises(InputError, match="expected float32"):  # checked against the specs on arrival
            batcher.submit({"x": np.ones((1, 3), np.float64)})
        right = batcher.submit(rows([2]))
        gate.set()
        blocker.result()
        assert right.result()["id"].tolist() == [2.0]

    class NoSpecs(Echo):  # a predictor that cannot say what it expects: the batch key still separates
        input_specs = ()

    gate = threading.Event()
    engine = NoSpecs(gate=gate)
    with held(engine, rows([1]), max_batch_size=4) as (batcher, blocker):
        other = batcher.submit({"x": np.full((1, 3), 3, np.float64)})
        right = batcher.submit(rows([2]))
        gate.set()
        blocker.result()
        assert other.result()["id"].tolist() == [3.0] and right.result()["id"].tolist() == [2.0]
    assert sorted(x.dtype.name for x in engine.inputs) == ["float32", "float32", "float64"]


def test_engine_errors_outside_the_kit_tree_are_translated():
    class Broken(Echo):
        def predict(self, feeds):
            raise RuntimeError("kernel exploded")

    with DynamicBatcher(Broken(), max_batch_size=4, batch_timeout_micros=0) as batcher:
        with pytest.raises(InferenceError, match="RuntimeError: kernel exploded") as info:
            batcher.predict(rows([1]))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_outputs_without_a_batch_dimension_fail_with_a_clear_error():
    class Scalar(Echo):
        def predict(self, feeds):
            return {"loss": np.float32(1.0)}

    with DynamicBatcher(Scalar(), max_batch_size=4, batch_timeout_micros=0) as batcher:
        with pytest.raises(InferenceError, match="carry the batch dimension"):
            batcher.predict(rows([1]))


def test_close_drains_pending_work_by_default():
    engine = Echo(delay_s=0.005)
    batcher = DynamicBatcher(engine, max_batch_size=2, batch_timeout_micros=10_000_000, max_enqueued_batches=100)
    futures = [batcher.submit(rows([i])) for i in range(1, 8)]
    batcher.close()  # a 10 s timeout must not hold the drain back
    assert all(f.done() for f in futures)
    assert [f.result()["id"].tolist() for f in futures] == [[float(i)] for i in range(1, 8)]
    assert engine.closed
    with pytest.raises(Closed):
        batcher.submit(rows([1]))
    batcher.close()  # twice is fine


def test_close_without_drain_rejects_pending_and_never_hangs_on_a_stuck_engine():
    gate = threading.Event()
    engine = Echo(gate=gate)
    batcher = DynamicBatcher(engine, max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=10,
                      drain_on_close=False, close_timeout_s=0.2)
    running = batcher.submit(rows([1]))
    wait_until(engine.entered.is_set)
    pending = [batcher.submit(rows([i])) for i in range(2, 6)]
    batcher.close()  # the engine never returns: close gives up after close_timeout_s
    for future in [running, *pending]:
        assert future.done()
        with pytest.raises(Closed):
            future.result()
    gate.set()  # the late answer is dropped, not delivered twice
    time.sleep(0.05)
    assert isinstance(running.exception(), Closed)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_batch_size": -4}, "max_batch_size"),
    ({"max_batch_size": 8, "allowed_batch_sizes": (2, 4)}, "must equal max_batch_size"),
    ({"max_batch_size": 8, "allowed_batch_sizes": (4, 2, 8)}, "strictly increasing"),
    ({"max_batch_size": 8, "allowed_batch_sizes": (0, 8)}, "strictly increasing"),
    ({"batch_timeout_micros": -1}, "batch_timeout_micros"),
    ({"max_enqueued_batches": 0}, "max_enqueued_batches"),
    ({"num_batch_threads": 0}, "num_batch_threads"),
    ({"close_timeout_s": 0}, "close_timeout_s"),
])
def test_invalid_parameters_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BatchingConfig(**kwargs)


def test_requests_larger_than_max_batch_size_are_refused():
    with DynamicBatcher(Echo(), max_batch_size=2, batch_timeout_micros=0) as batcher:
        with pytest.raises(InputError, match="exceeds max_batch_size=2"):
            batcher.predict(rows([1, 2, 3]))
        with pytest.raises(InputError, match="mapping"):
            batcher.predict([1, 2])


def test_batches_a_real_onnx_runtime_engine(add_onnx):
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    batcher = DynamicBatcher(OnnxRuntimeEngine(add_onnx), max_batch_size=16, batch_timeout_micros=2000)
    inputs = [np.full((1 + i % 3, 64), i, np.float32) for i in range(40)]
    with batcher, ThreadPoolExecutor(max_workers=16) as pool:
        outputs = list(pool.map(lambda x: batcher.predict({"x": x}), inputs))
        described = batcher.describe()
    for x, out in zip(inputs, outputs):
        np.testing.assert_array_equal(out["y"], x + 1)
    assert described["batching"]["max_batch_size"] == 16 and described["wrapped_by"][0] == "DynamicBatcher"


def test_stop_leaves_the_engine_open_for_another_batcher():
    engine = Echo()
    first = DynamicBatcher(engine, max_batch_size=4, batch_timeout_micros=0)
    assert first.predict(rows([1]))["id"].tolist() == [1.0]
    first.stop()
    with pytest.raises(Closed):
        first.predict(rows([1]))
    assert not engine.closed
    with DynamicBatcher(engine, max_batch_size=4, batch_timeout_micros=0) as second:
        assert second.predict(rows([2]))["id"].tolist() == [2.0]
    assert engine.closed


def test_a_poisonous_request_fails_alone_its_batch_mates_are_answered():
    """Issue 16 #9: one request that makes the engine raise, batched with 7 good ones, failed all 8."""
    gate = threading.Event()
    engine = Echo(gate=gate)
    with held(engine, rows([100]), max_batch_size=8) as (batcher, blocker):
        futures = [batcher.submit(rows([i if i != 3 else -3])) for i in range(8)]  # one batch of 8
        gate.set()
        blocker.result(timeout=10)
        for i, future in enumerate(futures):
            if i == 3:
                with pytest.raises(InferenceError, match="poisoned row"):
                    future.result(timeout=10)
            else:
                assert future.result(timeout=10)["id"].tolist() == [float(i)]
        assert batcher.stats()["isolated_batches"] == 1


class Exits(Echo):
    """An engine whose call raises SystemExit (a BaseException) on a poisoned row."""

    def predict(self, feeds):
        if (feeds["x"][:, 0] < 0).any():
            self.entered.set()
            if self.gate is not None:
                self.gate.wait()
            raise SystemExit("engine called sys.exit")
        return super().predict(feeds)


def test_a_dead_batch_thread_fails_every_pending_request(caplog):
    """Issue 16 #5: callers waited for good once the batch thread died of a BaseException."""
    gate = threading.Event()
    engine = Exits(gate=gate)
    batcher = DynamicBatcher(engine, max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=10)
    try:
        dying = batcher.submit(rows([-1]))
        wait_until(engine.entered.is_set)
        queued = [batcher.submit(rows([i])) for i in range(1, 6)]
        gate.set()
        for future in [dying, *queued]:
            with pytest.raises(InferenceError, match="batch thread died.*SystemExit"):
                future.result(timeout=10)  # a hang guard: the failure itself comes at once
        with pytest.raises(InferenceError, match="batch thread died"):
            batcher.submit(rows([7]))
        assert any("batch thread died" in r.getMessage() for r in caplog.records)
    finally:
        batcher.close()


# --- models that do not batch on axis 0 (issue 13 item 6) ----------------------------------------------------

@pytest.fixture
def state_engine(tmp_path):  # a fresh one each test: closing a batcher closes the engine it wraps
    from onnx_models import make_state_model

    from kit.engines.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(make_state_model(tmp_path / "vad.onnx"))
    yield engine
    engine.close()


def _state_feeds(rows: int, seed: int, sr: int = 16000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((rows, 64)).astype(np.float32),
            "state": rng.standard_normal((2, rows, 128)).astype(np.float32), "sr": np.array(sr, np.int64)}


def test_batcher_merges_and_splits_a_state_along_axis_1_and_keeps_the_sample_rate(state_engine):
    requests = [_state_feeds(1 + i % 2, seed=i) for i in range(6)]
    expected = [state_engine.predict(f) for f in requests]
    with DynamicBatcher(state_engine, max_batch_size=8, batch_timeout_micros=200_000) as batcher:
        futures = [batcher.submit(f) for f in requests]
        results = [f.result(timeout=10) for f in futures]
        assert batcher.stats()["batches"] < len(requests)  # they really were merged
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got["out"], want["out"], rtol=1e-5)
        np.testing.assert_allclose(got["new_state"], want["new_state"], rtol=1e-6)
        assert got["new_state"].shape[1] == want["out"].shape[0]


def test_batcher_never_merges_requests_with_different_sample_rates(state_engine):
    a, b = _state_feeds(1, seed=1, sr=16000), _state_feeds(1, seed=2, sr=8000)
    want_b = state_engine.predict(b)["out"]
    with DynamicBatcher(state_engine, max_batch_size=8, batch_timeout_micros=100_000) as batcher:
        fa, fb = batcher.submit(a), batcher.submit(b)
        fa.result(timeout=10)
        np.testing.assert_allclose(fb.result(timeout=10)["out"], want_b, rtol=1e-5)
        assert batcher.stats()["batches"] == 2


def test_batcher_refuses_a_model_with_a_fixed_batch_and_says_why():
    class Fixed(PredictorBase):
        name = "fixed"
        input_specs = (TensorSpec("x", np.float32, (1, 3, 224, 224)),)
        output_specs = (TensorSpec("y", np.float32, (1, 1000)),)

        def predict(self, feeds):
            return {"y": np.zeros((1, 1000), np.float32)}

    with pytest.raises(ConfigError, match="fixed batch size, so batching does not apply"):
        DynamicBatcher(Fixed(), max_batch_size=4)


@pytest.mark.slow
def test_batcher_on_silero_vad_splits_its_unnamed_state_output_along_axis_1():
    """Silero's stateN is [?, ?, ?]: its batch axis is learned from the state input's shape."""
    pretrained = pytest.importorskip("pretrained")
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.models import resolve_model

    engine = OnnxRuntimeEngine(resolve_model(pretrained.pretrained_path("silero-vad")))
    rng = np.random.default_rng(0)
    requests = [{"input": rng.standard_normal((1, 512)).astype(np.float32) * 0.1,
                 "state": rng.standard_normal((2, 1, 128)).astype(np.float32) * 0.1,
                 "sr": np.array(16000, np.int64)} for _ in range(4)]
    expected = [engine.predict(f) for f in requests]
    with DynamicBatcher(engine, max_batch_size=4, batch_timeout_micros=200_000) as batcher:
        results = [f.result(timeout=30) for f in [batcher.submit(r) for r in requests]]
        assert batcher.stats()["batches"] < 4
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got["output"], want["output"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got["stateN"], want["stateN"], rtol=1e-4, atol=1e-6)

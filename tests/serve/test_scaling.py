"""The scaling policy with deterministic synthetic readings, then the pool under a small live load."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from kit.engines.base import Wrapper
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import Closed, ConfigError, InputError, Overloaded
from kit.serve.scaling import Readings, ScalerState, ScalingConfig, ScalingPool, decide, step_load

CFG = ScalingConfig(min_workers=1, max_workers=4, queue_high=2.0, queue_low=0.25, latency_target_ms=50.0,
                    cpu_high_percent=90.0, memory_high_percent=90.0, up_after=2, down_after=3, cooldown_s=1.0)


def reading(t: float, queue: int = 0, p95: float | None = 10.0, cpu: float = 30.0, mem: float = 40.0,
            busy: float | None = None) -> Readings:
    return Readings(time_s=t, cpu_percent=cpu, memory_percent=mem, queue_length=queue, p95_latency_ms=p95,
                    busy_workers=busy)


def run(readings: list[Readings], state: ScalerState, config: ScalingConfig = CFG):
    decisions = []
    for r in readings:
        d = decide(r, state, config)
        decisions.append(d)
        state = d.state
    return decisions


# -- policy ------------------------------------------------------------------------------------

def test_scales_up_after_consecutive_high_readings():
    ds = run([reading(0.0, queue=5), reading(0.1, queue=5)], ScalerState(workers=2))
    assert [d.action for d in ds] == ["hold", "up"]
    assert "1/2 readings" in ds[0].reason
    assert ds[1].workers_after == 3 and "queue 2.5/worker >= 2" in ds[1].reason


def test_latency_over_target_also_scales_up():
    ds = run([reading(0.0, p95=80.0), reading(0.1, p95=80.0)], ScalerState(workers=1))
    assert ds[-1].action == "up" and "p95 80.0 ms > target 50 ms" in ds[-1].reason


def test_scales_down_after_consecutive_low_readings():
    ds = run([reading(t, queue=0, p95=5.0) for t in (0.0, 0.1, 0.2)], ScalerState(workers=3))
    assert [d.action for d in ds] == ["hold", "hold", "down"]
    assert ds[-1].workers_after == 2 and "load low" in ds[-1].reason


def test_bounds_are_never_crossed():
    up = run([reading(t * 0.1 + 2 * t, queue=100) for t in range(10)], ScalerState(workers=4))
    assert all(d.workers_after == 4 for d in up) and "maximum 4" in up[-1].reason
    down = run([reading(t * 2.0, queue=0, p95=None) for t in range(10)], ScalerState(workers=1))
    assert all(d.workers_after == 1 for d in down) and "minimum 1" in down[-1].reason
    assert decide(reading(0.0), ScalerState(workers=0), CFG).workers_after == 1
    assert decide(reading(0.0), ScalerState(workers=9), CFG).workers_after == 4


def test_hysteresis_band_and_alternating_readings_do_not_move_the_size():
    # inside the band (low < queue/worker < high, p95 between half target and target): nothing happens
    ds = run([reading(t, queue=2, p95=30.0) for t in range(10)], ScalerState(workers=2))
    assert all(d.action == "hold" and "within the band" in d.reason for d in ds)
    # a spike that is not sustained resets the streak: high, low, high, low ... never acts
    flip = [reading(t, queue=10 if t % 2 else 0, p95=5.0) for t in range(12)]
    ds = run(flip, ScalerState(workers=2))
    assert all(d.action == "hold" for d in ds)


def test_cool_down_blocks_a_second_change_until_it_ends():
    state = ScalerState(workers=2, last_change_s=10.0)
    ds = run([reading(10.2, queue=10), reading(10.4, queue=10), reading(10.6, queue=10), reading(11.1, queue=10)],
             state)
    assert [d.action for d in ds] == ["hold", "hold", "hold", "up"]
    assert "cooling down" in ds[1].reason and ds[-1].state.last_change_s == 11.1


def test_cpu_saturation_holds_scaling_up():
    ds = run([reading(t, queue=10, cpu=97.0) for t in range(5)], ScalerState(workers=2))
    assert all(d.action == "hold" and "CPU 97%" in d.reason for d in ds)
    free = decide(reading(5.0, queue=10, cpu=20.0), ds[-1].state, CFG)
    assert free.action == "up"  # the high streak was kept while CPU was saturated


def test_memory_pressure_sheds_workers_but_not_below_minimum():
    d = decide(reading(0.0, queue=10, mem=95.0), ScalerState(workers=3), CFG)
    assert d.action == "down" and "memory 95%" in d.reason
    d = decide(reading(0.0, queue=10, mem=95.0), ScalerState(workers=1), CFG)
    assert d.action == "hold" and "minimum" in d.reason


def test_no_scale_down_that_would_overload_the_remaining_workers():
    busy = run([reading(t, queue=0, p95=5.0, busy=2.6) for t in range(6)], ScalerState(workers=3))
    assert all(d.action == "hold" and "busy" in d.reason for d in busy)
    idle = run([reading(t, queue=0, p95=5.0, busy=0.4) for t in range(3)], ScalerState(workers=3))
    assert idle[-1].action == "down"


def test_policy_is_pure():
    state = ScalerState(workers=2, high_streak=1)
    r = reading(3.0, queue=9)
    assert decide(r, state, CFG) == decide(r, state, CFG)
    assert state == ScalerState(workers=2, high_streak=1)


@pytest.mark.parametrize("kwargs", [dict(min_workers=0), dict(min_workers=3, max_workers=2),
                                    dict(queue_low=2.0, queue_high=2.0), dict(interval_s=0),
                                    dict(cooldown_s=-1), dict(cpu_high_percent=0), dict(memory_high_percent=120),
                                    dict(latency_target_ms=0), dict(up_after=0), dict(cpu_source="gpu"),
                                    dict(down_utilization=0)])
def test_bad_configs_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ScalingConfig(**kwargs)


# -- the live pool -------------------------------------------------------------------------------

class _Sleepy(Wrapper):
    """A real engine plus a fixed wait, so worker count (not CPU) bounds throughput here."""

    def __init__(self, inner, seconds: float) -> None:
        super().__init__(inner)
        self.seconds = seconds
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def predict(self, feeds):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.seconds)
            return self.inner.predict(feeds)
        finally:
            with self._lock:
                self.active -= 1


def _feeds():
    return {"features": np.ones((1, 16), np.float32)}


def test_pool_answers_like_its_inner_predictor(mlp_onnx):
    engine = OnnxRuntimeEngine(mlp_onnx)
    expected = engine.predict(_feeds())["probabilities"]
    with ScalingPool(engine, ScalingConfig(min_workers=2, max_workers=2), autoscale=False) as pool:
        np.testing.assert_allclose(pool.predict(_feeds())["probabilities"], expected)
        assert pool.input_specs == engine.input_specs
        with pytest.raises(InputError):  # the engine's own error reaches the caller through the pool
            pool.predict({"features": np.ones((1, 3), np.float32)})
        stats = pool.stats()
        assert stats["completed"] == 1 and stats["failed"] == 1 and stats["workers"] == 2
    with pytest.raises(Closed):
        pool.predict(_feeds())


class _Gated(Wrapper):
    """Holds every call until the test opens the gate: a sync point that no stall can outrun."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, feeds):
        self.entered.set()
        self.gate.wait(10)
        return self.inner.predict(feeds)


def test_pool_rejects_when_its_queue_is_full(mlp_onnx):
    held = _Gated(OnnxRuntimeEngine(mlp_onnx))
    with ScalingPool(held, ScalingConfig(min_workers=1, max_workers=1, max_queue=2), autoscale=False) as pool:
        running = pool.submit(_feeds())
        assert held.entered.wait(5)  # the only worker is busy with it
        queued = [pool.submit(_feeds()) for _ in range(2)]
        with pytest.raises(Overloaded, match="queue is full"):
            pool.submit(_feeds())
        assert pool.stats()["rejected"] == 1
        held.gate.set()
        for future in (running, *queued):
            future.result(timeout=5)


def test_tick_resizes_the_thread_pool_and_records_every_decision(mlp_onnx):
    slow = _Sleepy(OnnxRuntimeEngine(mlp_onnx), 0.05)
    cfg = ScalingConfig(min_workers=1, max_workers=3, up_after=1, down_after=1, cooldown_s=0.0)
    with ScalingPool(slow, cfg, autoscale=False, read_machine=lambda: (10.0, 10.0)) as pool:
        futures = [pool.submit(_feeds()) for _ in range(12)]
        assert pool.tick().action == "up" and pool.tick().action == "up" and pool.workers == 3
        for f in futures:
            f.result(timeout=10)
        assert slow.peak == 3
        pool.tick(Readings(time_s=9.0, cpu_percent=5.0, memory_percent=5.0, queue_length=0))
        assert pool.workers == 2
        deadline = time.time() + 2
        while len(pool._threads) > 2 and time.time() < deadline:
            time.sleep(0.02)
        assert len(pool._threads) == 2
        frame = pool.to_frame()
        assert list(frame["action"]) == ["up", "up", "down"] and frame["reason"].str.len().min() > 10


def test_pool_under_a_small_step_load_scales_up_and_back_down(mlp_onnx):
    slow = _Sleepy(OnnxRuntimeEngine(mlp_onnx, intra_op_num_threads=1), 0.01)
    cfg = ScalingConfig(min_workers=1, max_workers=4, interval_s=0.05, up_after=1, down_after=2, cooldown_s=0.1,
                        cpu_high_percent=None, memory_high_percent=None)
    with ScalingPool(slow, cfg) as pool:
        result = step_load(pool, [(20, 0.4), (300, 0.8), (10, 1.2)], _feeds(), seed=1)
        stats = pool.stats()
    assert result.rejected == 0 and result.valid and result.scenario == "steps"
    assert stats["scale_ups"] >= 1 and stats["max_workers_used"] >= 2
    assert result.trace["workers"].iloc[-1] < stats["max_workers_used"]  # came back down after the step
    assert result.stats["completed"] == result.summary()["queries"] == len(result.scheduled_s)
    line = result.timeline(0.2)
    assert set(line.columns) == {"time_s", "offered_qps", "p95_ms"} and line.time_s.iloc[-1] >= 2.4


def test_step_load_rejects_bad_phases(mlp_onnx):
    with ScalingPool(OnnxRuntimeEngine(mlp_onnx), autoscale=False) as pool:
        for phases in ([], [(0, 1.0)], [(10, -1)]):
            with pytest.raises(ConfigError):
                step_load(pool, phases, _feeds())

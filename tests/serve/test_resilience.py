"""Retry, circuit breaker, timeout, fault injection and the request ledger."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from serve_fakes import FakeClock, Scripted, feeds

from kit.engines.deadline import remaining_deadline
from kit.errors import (
    CircuitOpen,
    Closed,
    ConfigError,
    DeadlineExceeded,
    InferenceError,
    InputError,
    KitError,
    Overloaded,
)
from kit.serve.faults import FaultConfig, FaultInjector
from kit.serve.ledger import Ledgered, RequestLedger
from kit.serve.resilience import BreakerConfig, CircuitBreaker, Retry, RetryPolicy, Timeout, is_retryable
from kit.testing import run_threads


def test_is_retryable_classifies_errors():
    assert is_retryable(InferenceError("x")) and is_retryable(Overloaded("x")) and is_retryable(CircuitOpen("x"))
    assert not is_retryable(InputError("x")) and not is_retryable(ConfigError("x"))
    assert not is_retryable(Closed("x")) and not is_retryable(KeyError("x"))


@pytest.mark.parametrize("kwargs", [dict(max_attempts=0), dict(base_delay_s=-1), dict(multiplier=0.5),
                                    dict(base_delay_s=1, max_delay_s=0.5), dict(deadline_s=0)])
def test_retry_policy_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


def test_retry_succeeds_after_transient_errors_with_full_jitter_backoff():
    clock = FakeClock()
    inner = Scripted([InferenceError("1"), Overloaded("2")])
    policy = RetryPolicy(max_attempts=5, base_delay_s=0.01, max_delay_s=0.015, multiplier=2, deadline_s=None)
    retry = Retry(inner, policy, clock=clock, sleep=clock.sleep, seed=7)
    out = retry.predict(feeds())
    np.testing.assert_array_equal(out["y"], feeds()["x"])
    assert inner.calls == 3
    # full jitter: each sleep drawn from U(0, cap) with the same seeded sequence
    rng = random.Random(7)
    expected = [rng.uniform(0, 0.01), rng.uniform(0, 0.015)]
    assert clock.sleeps == pytest.approx(expected)
    assert retry.stats() == {"requests": 1, "attempts": 3, "retries": 2, "succeeded": 1, "failed": 0,
                             "not_retryable": 0, "exhausted": 0, "deadline_exceeded": 0,
                             "slept_s": pytest.approx(sum(expected))}


def test_backoff_cap_grows_exponentially_up_to_the_maximum():
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, multiplier=2)
    assert [policy.backoff_cap(n) for n in range(5)] == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05])


def test_retry_gives_up_after_max_attempts_with_the_last_error():
    clock = FakeClock()
    inner = Scripted([InferenceError(f"e{i}") for i in range(10)])
    retry = Retry(inner, RetryPolicy(max_attempts=3, deadline_s=None), clock=clock, sleep=clock.sleep)
    with pytest.raises(InferenceError, match="e2"):
        retry.predict(feeds())
    assert inner.calls == 3
    assert retry.stats()["exhausted"] == 1 and retry.stats()["failed"] == 1


@pytest.mark.parametrize("error", [InputError("bad shape"), ConfigError("bad"), Closed("closed")])
def test_retry_never_retries_non_retryable_errors(error):
    clock = FakeClock()
    inner = Scripted([error])
    retry = Retry(inner, RetryPolicy(max_attempts=5), clock=clock, sleep=clock.sleep)
    with pytest.raises(type(error)):
        retry.predict(feeds())
    assert inner.calls == 1 and clock.sleeps == []
    assert retry.stats()["not_retryable"] == 1


def test_retry_fails_fast_on_an_open_circuit():
    clock = FakeClock()
    breaker = CircuitBreaker(Scripted([InferenceError("x")] * 10), BreakerConfig(failure_threshold=1), clock=clock)
    retry = Retry(breaker, RetryPolicy(max_attempts=5, deadline_s=None), clock=clock, sleep=clock.sleep)
    with pytest.raises(CircuitOpen):  # first attempt opens it; the second is refused and not retried
        retry.predict(feeds())
    assert retry.stats()["attempts"] == 2 and breaker.inner.calls == 1


def test_retry_does_not_hide_programming_errors():
    inner = Scripted([KeyError("oops")])
    retry = Retry(inner, RetryPolicy(max_attempts=5), sleep=lambda s: None)
    with pytest.raises(KeyError):
        retry.predict(feeds())
    assert inner.calls == 1


def test_retry_enforces_its_overall_deadline():
    clock = FakeClock()

    def slow_failure():
        clock.advance(0.4)  # each attempt takes 0.4 s of the 1 s deadline

    inner = Scripted([InferenceError("slow")] * 10, on_call=slow_failure)
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1, max_delay_s=0.1, deadline_s=1.0)
    class MaxJitter(random.Random):
        def uniform(self, a, b):
            return b

    retry = Retry(inner, policy, clock=clock, sleep=clock.sleep, rng=MaxJitter())
    with pytest.raises(DeadlineExceeded, match="1 s deadline; last error: InferenceError") as info:
        retry.predict(feeds())
    assert isinstance(info.value.__cause__, InferenceError)
    assert inner.calls == 2  # 0.4 + 0.1 + 0.4 + 0.1 reaches 1.0: no third attempt
    assert clock.now - 100.0 < 1.0
    assert retry.stats()["deadline_exceeded"] == 1


def test_retry_deadline_propagates_to_timeout():
    seen = []
    inner = Scripted(on_call=lambda: seen.append(remaining_deadline()))
    Retry(inner, RetryPolicy(deadline_s=5.0)).predict(feeds())
    assert seen[0] is not None and 0 < seen[0] <= 5.0
    assert remaining_deadline() is None  # reset after the request


def test_breaker_walks_closed_open_half_open_closed():
    clock = FakeClock()
    inner = Scripted([InferenceError("a"), InferenceError("b"), InferenceError("c")])
    breaker = CircuitBreaker(inner, BreakerConfig(failure_threshold=3, cool_down_s=5.0), clock=clock)
    for _ in range(3):
        assert breaker.state == "closed"
        with pytest.raises(InferenceError):
            breaker.predict(feeds())
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen, match="another 5.000 s"):
        breaker.predict(feeds())
    assert inner.calls == 3  # refused without calling the route
    clock.advance(5.0)
    assert breaker.state == "half_open"
    breaker.predict(feeds())  # the probe succeeds
    assert breaker.state == "closed"
    assert [(a, b) for _, a, b in breaker.transitions] == [("closed", "open"), ("open", "half_open"),
                                                           ("half_open", "closed")]
    stats = breaker.stats()
    assert stats["rejected"] == 1 and stats["opened"] == 1 and stats["failed"] == 3 and stats["succeeded"] == 1


def test_breaker_half_open_failure_reopens_and_limits_probes():
    clock = FakeClock()
    gate = threading.Event()
    started = threading.Event()
    inner = Scripted([InferenceError("a"), None, InferenceError("probe fails")])
    breaker = CircuitBreaker(inner, BreakerConfig(failure_threshold=1, cool_down_s=1.0), clock=clock)
    with pytest.raises(InferenceError):
        breaker.predict(feeds())
    clock.advance(1.0)
    # one probe in flight: a second caller is refused while it runs
    inner.on_call = lambda: (started.set(), gate.wait(5))
    probe = threading.Thread(target=breaker.predict, args=(feeds(),))
    probe.start()
    assert started.wait(5)
    with pytest.raises(CircuitOpen, match="probe"):
        breaker.predict(feeds())
    gate.set()
    probe.join(5)
    assert breaker.state == "closed"
    inner.on_call = None
    breaker.config = BreakerConfig(failure_threshold=1, cool_down_s=1.0)
    with pytest.raises(InferenceError):
        breaker.predict(feeds())
    assert breaker.state == "open"
    clock.advance(1.0)
    inner.script = [InferenceError("probe fails again")]
    with pytest.raises(InferenceError):
        breaker.predict(feeds())
    assert breaker.state == "open"  # a failed probe opens it again for a whole cool-down
    assert [b for _, _, b in breaker.transitions][-2:] == ["half_open", "open"]


def test_breaker_ignores_bad_inputs_and_resets_on_success():
    clock = FakeClock()
    inner = Scripted([InferenceError("1"), InputError("bad"), InputError("bad"), None, InferenceError("2")])
    breaker = CircuitBreaker(inner, BreakerConfig(failure_threshold=2), clock=clock)
    for _ in range(3):
        with pytest.raises(KitError):
            breaker.predict(feeds())
    assert breaker.state == "closed" and breaker.stats()["consecutive_failures"] == 1
    breaker.predict(feeds())
    assert breaker.stats()["consecutive_failures"] == 0
    with pytest.raises(InferenceError):
        breaker.predict(feeds())
    assert breaker.state == "closed"


def test_breaker_config_validation():
    with pytest.raises(ConfigError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ConfigError):
        BreakerConfig(half_open_max_calls=1, success_threshold=2)


def test_timeout_raises_deadline_exceeded_on_a_hang_and_passes_answers():
    hang = FaultInjector(Scripted(), FaultConfig(hang_rate=1.0, hang_s=10.0))
    timed = Timeout(hang, 0.05)
    with pytest.raises(DeadlineExceeded, match="no answer within"):
        timed.predict(feeds())
    assert timed.stats()["timed_out"] == 1
    timed.close()  # wakes the hung call
    fast = Timeout(Scripted(), 1.0)
    assert fast.predict(feeds())["y"].shape == (1, 4)
    with pytest.raises(InputError):
        Timeout(Scripted([InputError("bad")]), 1.0).predict(feeds())
    fast.close()
    with pytest.raises(Closed):
        fast.predict(feeds())


def test_timeout_uses_the_retry_deadline_when_smaller():
    hang = FaultInjector(Scripted(), FaultConfig(hang_rate=1.0, hang_s=10.0))
    stack = Retry(Timeout(hang, 5.0), RetryPolicy(max_attempts=1, deadline_s=0.05))
    with pytest.raises(DeadlineExceeded):
        stack.predict(feeds())
    stack.close()


def test_fault_injector_is_seeded_and_counts():
    def outcomes(seed):
        inj = FaultInjector(Scripted(), FaultConfig(error_rate=0.3, seed=seed))
        result = []
        for _ in range(200):
            try:
                inj.predict(feeds())
                result.append(True)
            except InferenceError:
                result.append(False)
        return result, inj.stats()

    a, stats = outcomes(3)
    b, _ = outcomes(3)
    assert a == b
    assert stats["calls"] == 200 and stats["errors"] == a.count(False)
    assert 0.2 < stats["errors"] / 200 < 0.4
    with pytest.raises(ConfigError):
        FaultConfig(error_rate=1.5)


def test_fault_injector_latency_and_update():
    slept = []
    inj = FaultInjector(Scripted(), latency_s=0.01, slow_rate=1.0, slow_s=0.2, sleep=slept.append)
    inj.predict(feeds())
    assert slept == [pytest.approx(0.21)]
    inj.update(error_rate=1.0, slow_rate=0.0, latency_s=0.0, error=Overloaded)
    with pytest.raises(Overloaded, match="injected fault"):
        inj.predict(feeds())


def test_ledger_balances_under_concurrent_faulty_traffic():
    ledger = RequestLedger()
    stack = Ledgered(Retry(FaultInjector(Scripted(), error_rate=0.3, seed=1), RetryPolicy(max_attempts=2),
                           sleep=lambda s: None), ledger, tag="demo")

    def client(_: int) -> None:
        for _ in range(50):
            try:
                stack.predict(feeds())
            except KitError:
                pass

    run_threads(client, 4)
    summary = ledger.check("demo")
    assert summary["submitted"] == 200 and summary["in_flight"] == 0
    assert summary["answered"] + summary["failed"] == 200 and summary["failed"] > 0
    assert set(summary["failed_by_error"]) == {"InferenceError"}
    frame = ledger.to_frame()
    assert len(frame) == 200 and set(frame["status"]) == {"answered", "failed"}


def test_ledger_flags_lost_and_unclear_requests():
    ledger = RequestLedger()
    ledger.open("x")  # never closed: a lost request
    with pytest.raises(AssertionError, match="neither answered nor failed"):
        ledger.check()
    ledger2 = RequestLedger()
    with pytest.raises(KeyError):
        Ledgered(Scripted([KeyError("raw")]), ledger2).predict(feeds())
    with pytest.raises(AssertionError, match="without a clear kit error"):
        ledger2.check()


def test_retry_deadline_holds_while_an_attempt_hangs():
    """Issue 16 #6: Retry(engine that hangs 5 s, deadline_s=0.5) returned after 5 s."""
    release = threading.Event()
    inner = Scripted(on_call=lambda: release.wait(10))
    retry = Retry(inner, RetryPolicy(deadline_s=0.2))
    try:
        done = []
        caller = threading.Thread(target=lambda: done.append(_raised(retry.predict, feeds())))
        caller.start()
        caller.join(5)  # a hang guard: the answer is due after 0.2 s, the hang lasts until released
        assert done and isinstance(done[0], DeadlineExceeded) and "0.2 s deadline" in str(done[0])
        assert retry.stats()["deadline_exceeded"] == 1 and inner.calls == 1  # not retried
    finally:
        release.set()
        retry.close()
    assert remaining_deadline() is None


def _raised(fn, *args):
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed back to the test
        return exc
    return None


def test_a_stale_success_does_not_close_a_half_open_breaker():
    """Issue 16 #10: a call admitted while closed that succeeded after the breaker went half-open closed it."""
    clock = FakeClock()
    slow_started, slow_release = threading.Event(), threading.Event()
    probe_started, probe_release = threading.Event(), threading.Event()
    inner = Scripted()
    breaker = CircuitBreaker(inner, BreakerConfig(failure_threshold=1, cool_down_s=1.0), clock=clock)
    inner.on_call = lambda: (slow_started.set(), slow_release.wait(5))
    slow = threading.Thread(target=breaker.predict, args=(feeds(),))  # admitted while closed
    slow.start()
    assert slow_started.wait(5)
    inner.on_call = None
    inner.script = [InferenceError("down")]
    with pytest.raises(InferenceError):
        breaker.predict(feeds())  # opens the breaker
    clock.advance(1.0)
    assert breaker.state == "half_open"
    inner.on_call = lambda: (probe_started.set(), probe_release.wait(5))
    probe = threading.Thread(target=_raised, args=(breaker.predict, feeds()))
    probe.start()
    assert probe_started.wait(5)
    slow_release.set()  # the old call succeeds while the real probe is still out
    slow.join(5)
    assert breaker.state == "half_open"
    with pytest.raises(CircuitOpen):
        breaker.predict(feeds())  # still refused: the probe decides
    probe_release.set()
    probe.join(5)
    assert breaker.state == "closed"

"""kit.testing.run_threads: the helper every concurrency test relies on must not swallow failures."""

from __future__ import annotations

import pytest

from kit.testing import run_threads


def test_results_come_back_in_worker_order():
    assert run_threads(lambda i: i * i, 5) == [0, 1, 4, 9, 16]


def test_a_failure_in_any_thread_is_raised_in_the_caller():
    def worker(i: int) -> None:
        assert i != 3, "thread 3 failed"

    with pytest.raises(AssertionError, match="thread 3 failed"):
        run_threads(worker, 4)


def test_a_stuck_thread_fails_the_caller():
    import threading

    release = threading.Event()
    with pytest.raises(AssertionError, match="still running"):
        run_threads(lambda i: release.wait(5) if i == 0 else None, 2, timeout_s=0.2)
    release.set()

"""Tiny models built in code, and a thread runner, for tests, examples and benchmarks that need no zoo build."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kit.engines.probe import ONNX_IR_VERSION, ONNX_OPSET, make_add_model, make_mlp_model  # noqa: F401  (re-exported)


def gpu_provider_loads() -> bool:
    """Whether a CUDA session really runs on CUDA here (listing it proves nothing)."""
    import tempfile

    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.errors import KitError

    with tempfile.TemporaryDirectory() as tmp:
        path = make_add_model(Path(tmp) / "probe.onnx")
        try:
            OnnxRuntimeEngine(path, providers=("CUDAExecutionProvider",)).close()
        except KitError:
            return False
    return True


def run_threads(worker: Callable[[int], Any], count: int, timeout_s: float = 60.0) -> list[Any]:
    """Run ``worker(0) .. worker(count - 1)`` on threads released together; their results in order.

    An exception in any thread is re-raised here (a failed assert in a thread would
    otherwise only print), and a thread still running after ``timeout_s`` fails the caller.
    """
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = worker(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"run-threads-{i}", daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    if errors:
        raise errors[0]
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise AssertionError(f"{len(stuck)} thread(s) still running after {timeout_s} s: {stuck}")
    return results

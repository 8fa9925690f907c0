"""The kit ONNX Runtime engine's per-call overhead against a bare ``InferenceSession.run``.

Model: a 64-wide Add (so the runtime's own work is tiny and the wrapper's cost shows).
Both paths share one session and are timed interleaved in rounds; the overhead is the
difference of the medians of per-round mean call times. Target: <= 1 us per call.

    .venv/bin/python benchmarks/bench_engine_overhead.py [--check]

``--check`` exits 1 when the overhead misses its target by more than the spread of the
per-round differences (see ``kit.profile.targets``), or the two paths disagree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.profile.targets import Targets
from kit.testing import make_add_model

ROUNDS = 30
CALLS_PER_ROUND = 2000
TARGET_US = 1.0


def mean_call_us(fn, n: int) -> float:
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        fn()
    return (clock() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed beyond its noise")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds")
    args = parser.parse_args()
    targets = Targets("bench_engine_overhead.py")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_add_model(Path(tmp) / "add64.onnx", width=64)
        engine = OnnxRuntimeEngine(path, intra_op_num_threads=1)
        session = engine.session
        feeds = {"x": np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)}
        names = ["y"]
        bare = lambda: session.run(names, feeds)  # noqa: E731
        kit_call = lambda: engine.predict(feeds)  # noqa: E731
        targets.check("kit and bare answers equal", np.array_equal(bare()[0], kit_call()["y"]))
        for fn in (bare, kit_call):
            mean_call_us(fn, 2000)
        bare_us, kit_us, diffs = [], [], []
        for i in range(args.rounds):
            order = (bare, kit_call) if i % 2 == 0 else (kit_call, bare)
            times = {fn: mean_call_us(fn, CALLS_PER_ROUND) for fn in order}
            bare_us.append(times[bare])
            kit_us.append(times[kit_call])
            diffs.append(times[kit_call] - times[bare])
        engine.close()
    overhead = statistics.median(diffs)
    q = statistics.quantiles(diffs, n=4)
    print(f"model: Add over float32[1, 64]; {args.rounds} interleaved rounds x {CALLS_PER_ROUND} calls each")
    print(f"{'path':<34}{'median us/call':>16}")
    print(f"{'bare InferenceSession.run':<34}{statistics.median(bare_us):>16.2f}")
    print(f"{'kit OnnxRuntimeEngine.predict':<34}{statistics.median(kit_us):>16.2f}")
    print(f"kit overhead per call: {overhead:.3f} us (IQR {q[0]:.3f} .. {q[2]:.3f}); "
          f"ratio kit/bare {statistics.median(kit_us) / statistics.median(bare_us):.3f}")
    print(f"target <= {TARGET_US:.1f} us: {'MET' if overhead <= TARGET_US else 'NOT MET'}")
    targets.rounds("kit overhead per call", diffs, TARGET_US, "lower", unit="us")
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

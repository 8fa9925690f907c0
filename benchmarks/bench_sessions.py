"""How much one ONNX Runtime session of a model differs from the next, in one process.

Why ``kit.optimize.evaluate`` times each round after the first on a fresh session
(``EvalConfig.fresh_sessions``): sessions of all-MiniLM-L6-v2 created one after another can settle
at different speeds, each steady within itself, so rounds on one session show a tight spread while
two runs disagree. This prints each session's p50 and compares the spread between sessions with the
spread within them, at ORT's default threads (2 here), with the intra-op workers not spinning, and on one
thread. In one run: 16.6-19.3 ms (1.17x) at level 'all', 18.4-30.3 ms (1.65x) at 'disable', 18.1-20.3 ms
(1.12x) not spinning, and 31.5-32.4 ms (1.03x) on one thread: sessions agree once one thread does the work,
so a comparison of kernels is judged there (``bench_real_models.py``'s fusion target). No speed target:
``--check`` checks that every session answered.
Run: ``.venv/bin/python benchmarks/bench_sessions.py [--model minilm] [--sessions 6] [--check]``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.models import resolve_model
from kit.profile import LoadConfig, profile
from kit.profile.targets import Targets
from kit.zoo import sample_feeds

SPINNING = "session.intra_op.allow_spinning"  # ONNX Runtime's session config key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="zoo model name or model path (ONNX)")
    parser.add_argument("--sessions", type=int, default=6, help="sessions created one after another")
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per session, s")
    parser.add_argument("--check", action="store_true", help="exit 1 when a session failed to answer")
    args = parser.parse_args()
    targets = Targets("bench_sessions.py", speed_target=False)
    source = resolve_model(args.model, format="onnx")
    feeds = sample_feeds(args.model, batch_size=1)
    config = LoadConfig(warmup_queries=3, min_duration_s=args.seconds, min_queries=20)
    setups = {"session level 'all'": {"graph_optimization_level": "all"},
              "session level 'disable'": {"graph_optimization_level": "disable"},
              "level 'all', workers not spinning": {"session_config": {SPINNING: "0"}},
              "level 'all', one thread": {"intra_op_num_threads": 1}}
    for label, options in setups.items():
        p50s, within, errors = [], [], 0
        for _ in range(args.sessions):
            with OnnxRuntimeEngine(source, **options) as engine:
                result = profile(engine, feeds, config)
            p50s.append(result.summary()["p50_ms"])
            within.append(float(np.percentile(result.latencies_s, 75) - np.percentile(result.latencies_s, 25)) * 1e3)
            errors += result.errors
        targets.check(f"{label}: every request of {args.sessions} sessions answered", not errors, f"{errors} errors")
        print(f"{args.model}, {label}: p50 by session " + ", ".join(f"{p:.1f}" for p in p50s)
              + f" ms; between sessions {min(p50s):.1f}-{max(p50s):.1f} ms ({max(p50s) / min(p50s):.2f}x), "
              f"within a session IQR median {np.median(within):.2f} ms", flush=True)
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

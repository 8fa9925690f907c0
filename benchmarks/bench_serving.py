"""In-process vs ``kit serve`` gRPC vs REST latency for the zoo's digits CNN, in one run.

The server is a child process started with ``kit serve`` (its own interpreter and GIL, as a
real model server would be), serving the same ONNX file that the in-process ONNX Runtime
engine loads with the same options, so the difference is the serving path: encoding,
the loopback socket, the server's threads and decoding. Variants are measured interleaved
in rounds (kit.profile.compare) and their samples pooled; p50/p99 and the ratio to the
in-process p50 are printed side by side. Issue 7 sets no target for these figures: they
are reported as measured, and every variant's answers are checked against in-process.

Run: ``.venv/bin/python benchmarks/bench_serving.py [--quick] [--check]``; with no speed target,
``--check`` exits 1 only when a variant failed requests or disagreed with in-process.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import numpy as np

from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.engines.tfserving import TFServingEngine
from kit.profile import LoadConfig, compare
from kit.profile.sysinfo import environment
from kit.profile.targets import Targets
from kit.zoo import get_model, sample_feeds


def start_server(path: str) -> tuple[subprocess.Popen, str, str]:
    """``kit serve`` in a child process on free ports; returns it with its gRPC and REST URLs."""
    proc = subprocess.Popen([sys.executable, "-m", "kit.cli", "serve", path, "--name", "digits",
                             "--grpc-port", "0", "--rest-port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    urls = re.findall(r"(grpc://\S+|http://\S+)", line)
    if len(urls) != 2:
        proc.kill()
        raise RuntimeError(f"kit serve did not start: {line!r} (exit code {proc.poll()})")
    return proc, urls[0], urls[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter run")
    parser.add_argument("--check", action="store_true", help="exit 1 when a variant failed requests or disagreed")
    args = parser.parse_args()
    targets = Targets("bench_serving.py", speed_target=False)
    rounds, seconds = (4, 0.2) if args.quick else (10, 1.0)
    batch_sizes = (1, 32)

    artifact = get_model("digits_cnn", format="onnx")
    started = time.perf_counter()
    proc, grpc_url, rest_url = start_server(str(artifact.path))
    print(f"kit serve started in {time.perf_counter() - started:.1f} s (child process: {grpc_url}, {rest_url})")
    variants = {}
    try:
        variants = {"in-process ORT": OnnxRuntimeEngine(artifact),
                    "kit serve gRPC": TFServingEngine(grpc_url, "digits"),
                    "kit serve REST columnar": TFServingEngine(rest_url, "digits"),
                    "kit serve REST row": TFServingEngine(rest_url, "digits", rest_format="row")}
        rows = []
        for batch in batch_sizes:
            feeds = sample_feeds("digits_cnn", batch_size=batch, seed=1)
            reference = variants["in-process ORT"].predict(feeds)["probabilities"]
            worst = {k: float(np.max(np.abs(v.predict(feeds)["probabilities"] - reference)))
                     for k, v in variants.items()}
            config = LoadConfig(warmup_queries=20, min_duration_s=seconds * len(batch_sizes), min_queries=50)
            results = compare(variants, feeds, rounds=rounds, config=config)
            base = results[0].summary()
            for result in results:
                s = result.summary()
                rows.append((batch, result.label, s["p50_ms"], s["p99_ms"], s["p50_ms"] / base["p50_ms"],
                             (s["p50_ms"] - base["p50_ms"]) * 1e3, int(s["queries"]), int(s["errors"]),
                             worst[result.label]))
    finally:
        for predictor in variants.values():
            predictor.close()
        proc.terminate()
        proc.wait(timeout=30)

    env = environment()
    print(f"digits_cnn (ONNX, 8x8x1 input), {rounds} interleaved rounds, client and server on one machine; "
          f"CPU: {env.get('cpu_model', '?')}, {env.get('logical_cores', '?')} logical cores")
    print(f"{'batch':>5}  {'variant':<24} {'p50 ms':>8} {'p99 ms':>8} {'p50 / in-process':>17} "
          f"{'added p50 us':>13} {'queries':>8} {'errors':>6} {'max |diff|':>10}  target")
    for batch, label, p50, p99, ratio, added, queries, errors, diff in rows:
        print(f"{batch:>5}  {label:<24} {p50:>8.3f} {p99:>8.3f} {ratio:>16.2f}x {added:>13.0f} {queries:>8} "
              f"{errors:>6} {diff:>10.1e}  none set (reported)")
    bad = [r for r in rows if r[7] or r[8] > 1e-6]
    print("answers: all variants agree with in-process and no request failed" if not bad else
          f"PROBLEM: {len(bad)} variant(s) failed requests or disagreed: {[(r[0], r[1]) for r in bad]}")
    for batch, label, *_, errors, diff in rows:
        targets.check(f"batch {batch} {label}: no failed request, answers equal in-process", not errors and diff <= 1e-6,
                      f"{errors} errors, max |diff| {diff:.1e}")
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

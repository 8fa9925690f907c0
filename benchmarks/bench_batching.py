"""Load generator capacity and dynamic-batching gains, measured in one run.

(a) The load generator against a no-op Predictor, open loop (Poisson): the rate it
    schedules and whether it sends on time (target: >= 20,000 scheduled q/s with a p99
    send lag under 1 ms).
(b) 32 concurrent single-sample clients on MobileNetV2 (zoo), for TF SavedModel and ONNX
    Runtime: the batcher's throughput as a fraction of the engine's own offline
    throughput at batch 32 (target >= 90 %), and as a multiple of unbatched throughput
    at the same concurrency (target >= 1.6x for TF SavedModel; ONNX Runtime is reported,
    since on 2 CPU cores its batch-32 throughput is about its batch-1 throughput).
    It also prints the headroom for that multiple (offline batch-32 throughput over
    unbatched throughput at the same concurrency: a batcher runs at about its engine's
    own batch throughput) and offline batch 32 over one single-stream batch-1 client.

The three variants of (b) are measured interleaved in rounds (offline, batched,
unbatched, offline, ...) and each ratio is the median of per-round ratios, because this
shared machine's speed drifts from one second to the next. Each figure comes with the
CPU time this process spent per sample: on a shared machine, 32 runnable client threads
also win more CPU from other processes than one batch thread does.

The batch timeout (1 s by default) is set above one batch's run time. With 32 clients
and batches of 32, a shorter timeout lets a partial batch run alone whenever a few
clients are late (thread start-up, a busy machine); the clients then stay split into
two smaller groups, each batch timing out while the other runs (TF Serving's scheduler
does the same). In steady state every batch is full and the timeout never fires; the
printed histogram of batch sizes shows whether that held.

    .venv/bin/python benchmarks/bench_batching.py [--rounds 4] [--seconds 3] [--engines tensorflow onnxruntime] [--check]

``--check`` exits 1 when a target is missed by more than the range of its per-run or per-round
figures (``kit.profile.targets``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from kit.engines.base import PredictorBase  # noqa: E402
from kit.profile.loadgen import run
from kit.profile.scenarios import Concurrency, LoadConfig, Offline, Server, SingleStream
from kit.profile.stats import median_spread  # noqa: E402
from kit.profile.targets import Targets  # noqa: E402
from kit.serve.batching import BatchingConfig, DynamicBatcher  # noqa: E402
from kit.specs import TensorSpec  # noqa: E402


class NoOp(PredictorBase):
    """Answers at once: whatever the run measures is the load generator itself."""

    name = "noop"
    _input_specs = (TensorSpec("x", np.float32, ("batch", 4)),)
    _output_specs = (TensorSpec("x", np.float32, ("batch", 4)),)

    def predict(self, feeds):
        return feeds


def verdict(ok: bool) -> str:
    return "MET" if ok else "not met"


def loadgen_capacity(rate: float, runs: int, seconds: float, targets: Targets) -> bool:
    print(f"\n(a) load generator, open loop (Poisson) against a no-op Predictor, {runs} runs of {seconds:g} s")
    print(f"{'target q/s':>10} {'scheduled q/s':>14} {'sent q/s':>10} {'lag p50 ms':>11} {'lag p99 ms':>11} "
          f"{'lag max ms':>11} {'valid':>6}")
    scheduled, lag99 = [], []
    for i in range(runs):
        result = run(NoOp(), Server(target_qps=rate, latency_target_ms=1000.0, workers=16),
                     config=LoadConfig(warmup_queries=1000, min_duration_s=seconds, min_queries=1000, seed=i))
        s = result.summary()
        sched_qps = (result.scheduled_s.size - 1) / float(result.scheduled_s[-1] - result.scheduled_s[0])
        sent_qps = (result.sent_s.size - 1) / float(result.sent_s.max() - result.sent_s.min())
        scheduled.append(sched_qps)
        lag99.append(s["send_lag_p99_ms"])
        print(f"{rate:>10.0f} {sched_qps:>14.0f} {sent_qps:>10.0f} {s['send_lag_p50_ms']:>11.3f} "
              f"{s['send_lag_p99_ms']:>11.3f} {s['send_lag_max_ms']:>11.3f} {str(result.valid):>6}")
    med_rate, _ = median_spread(scheduled)
    med_lag, spread = median_spread(lag99)
    ok = med_rate >= 20_000 and med_lag < 1.0
    print(f"median: {med_rate:,.0f} scheduled q/s (target >= 20,000), p99 send lag {med_lag:.3f} "
          f"+/- {spread:.3f} ms (target < 1 ms): {verdict(ok)}")
    targets.rounds("load generator scheduled rate", scheduled, 20_000, "higher", unit="q/s")
    targets.rounds("load generator p99 send lag", lag99, 1.0, "lower", unit="ms")
    return ok


def load_engine(kind: str):
    from kit.engines.registry import create_engine
    from kit.zoo import get_model

    fmt = "savedmodel" if kind == "tensorflow" else "onnx"
    return create_engine(get_model("mobilenet_v2", format=fmt))


def batching_gain(kind: str, rounds: int, seconds: float, clients: int, batching: BatchingConfig,
                  targets: Targets) -> bool:
    from kit.zoo import sample_feeds

    engine = load_engine(kind)
    one = sample_feeds("mobilenet_v2", batch_size=1)
    full = sample_feeds("mobilenet_v2", batch_size=batching.max_batch_size)
    batcher = DynamicBatcher(engine, batching)
    config = LoadConfig(warmup_queries=2, min_duration_s=seconds, min_queries=3)
    closed = LoadConfig(warmup_queries=2 * clients, min_duration_s=seconds, min_queries=2 * clients)
    variants = {
        f"offline b{batching.max_batch_size}": lambda: run(engine, Offline(batch_size=batching.max_batch_size), full,
                                                           config),
        f"batched c{clients}": lambda: run(batcher, Concurrency(clients), one, closed),
        f"unbatched c{clients}": lambda: run(engine, Concurrency(clients), one, closed),
        "single b1": lambda: run(engine, SingleStream(), one, config),
    }
    names = list(variants)
    per_round: dict[str, list[float]] = {n: [] for n in names}
    p99: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            s = variants[name]().summary()
            per_round[name].append(s["samples_per_s"])
            p99[name].append(s["p99_ms"])
            cpu[name].append(s["cpu_ms_per_sample"])
    stats = batcher.stats()
    batcher.close()
    offline, batched, unbatched, single = (np.asarray(per_round[n]) for n in names)
    fraction, f_spread = median_spread(batched / offline)
    multiple, m_spread = median_spread(batched / unbatched)
    print(f"\n(b) {kind} MobileNetV2, {clients} single-sample clients, batcher {batching.max_batch_size} rows / "
          f"{batching.batch_timeout_micros} us, {rounds} interleaved rounds of {seconds:g} s")
    for name in names:
        med, spread = median_spread(per_round[name])
        print(f"  {name:<14} {med:8.1f} +/- {spread:5.1f} samples/s   p99 {np.median(p99[name]):8.1f} ms   "
              f"CPU {np.median(cpu[name]):6.1f} ms/sample")
    print(f"  batch sizes run by the batcher (rows: batches): {stats['batch_size_histogram']}")
    ok_fraction = fraction >= 0.9
    print(f"  batched / engine offline at batch {batching.max_batch_size}: {fraction:6.1%} +/- {f_spread:.1%} "
          f"(target >= 90 %): {verdict(ok_fraction)}")
    targets.rounds(f"{kind} batched / offline at batch {batching.max_batch_size}", batched / offline, 0.9, "higher")
    if kind == "tensorflow":
        ok_multiple = multiple >= 1.6
        print(f"  batched / unbatched at concurrency {clients}: {multiple:5.2f}x +/- {m_spread:.2f} "
              f"(target >= 1.6x): {verdict(ok_multiple)}")
        targets.rounds(f"{kind} batched / unbatched at {clients} clients", batched / unbatched, 1.6, "higher",
                       unit="x")
    else:
        ok_multiple = True
        print(f"  batched / unbatched at concurrency {clients}: {multiple:5.2f}x +/- {m_spread:.2f} "
              f"(reported; no target: batching is not expected to pay here)")
    headroom, c_spread = median_spread(offline / unbatched)
    premise, p_spread = median_spread(offline / single)
    print(f"  headroom: engine offline at batch {batching.max_batch_size} / unbatched at concurrency {clients} = "
          f"{headroom:5.2f}x +/- {c_spread:.2f} (what batching itself has to offer here, since the batcher runs at "
          f"about its engine's batch throughput); engine offline / one single-stream client at batch 1 = "
          f"{premise:5.2f}x +/- {p_spread:.2f}")
    efficiency, e_spread = median_spread(np.asarray(cpu[names[2]]) / np.asarray(cpu[names[1]]))
    print(f"  samples per CPU-second, batched / unbatched: {efficiency:5.2f}x +/- {e_spread:.2f} (wall-clock figures "
          f"on a shared machine also reflect how much CPU each variant's threads won from other processes)")
    engine.close()
    return ok_fraction and ok_multiple


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000, help="open-loop rate for (a), queries/s")
    parser.add_argument("--runs", type=int, default=3, help="runs of (a)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of (b)")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum seconds per measurement of (b)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent single-sample clients in (b)")
    parser.add_argument("--timeout-micros", type=int, default=1_000_000, help="batch_timeout_micros in (b)")
    parser.add_argument("--engines", nargs="*", default=["tensorflow", "onnxruntime"])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed beyond its noise")
    args = parser.parse_args()
    targets = Targets("bench_batching.py")
    start = time.perf_counter()
    from kit.profile.sysinfo import environment

    env = environment()
    print(f"CPU: {env['cpu_model']}, {env['affinity_cores']} cores; load average {os.getloadavg()[0]:.1f}")
    results = [loadgen_capacity(args.rate, args.runs, 2.0, targets)]
    batching = BatchingConfig(max_batch_size=32, batch_timeout_micros=args.timeout_micros,
                              max_enqueued_batches=max(2, args.clients), num_batch_threads=1)
    for kind in args.engines:
        results.append(batching_gain(kind, args.rounds, args.seconds, args.clients, batching, targets))
    print(f"\n{sum(results)}/{len(results)} targets met in {time.perf_counter() - start:.0f} s; "
          f"load average now {os.getloadavg()[0]:.1f}")
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

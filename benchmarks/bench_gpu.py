"""ONNX Runtime CUDA throughput through the kit vs bare ONNX Runtime, with and without IO binding.

On MobileNetV2 (zoo) at batch 1 and 32:

- plain: ``OnnxRuntimeEngine.predict`` vs ``InferenceSession.run`` on the same kind of session;
- IO binding: ``IoBoundEngine.predict`` vs a bare ``io_binding()`` loop (bind the numpy
  input, bind the output on the GPU, run, copy the output back);
- device-resident: ``IoBoundEngine.run_on_device`` vs the bare equivalent (inputs already
  on the GPU, outputs left there).

Each pair is measured interleaved in rounds; the ratio is kit / bare throughput (target
>= 95 %). Where no GPU execution provider really loads, the script says so, names why
for each provider, and exits 0: there is nothing to measure.

    .venv/bin/python benchmarks/bench_gpu.py [--rounds 5] [--seconds 1.0] [--provider CPUExecutionProvider] [--check]

``--check`` exits 1 when a kit/bare ratio misses 95 % by more than the range of its per-round
ratios (``kit.profile.targets``), or the IO-bound answers differ; with no GPU it exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # kit._quiet sets the runtimes' log levels

from kit.engines.providers import CPU, CUDA, CudaOptions, discover_providers  # noqa: E402
from kit.profile.targets import Targets  # noqa: E402


def verdict(ok: bool) -> str:
    return "MET" if ok else "not met"


def timed(call, seconds: float) -> list[float]:
    out = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(out) < 5:
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def measure(pairs: dict[str, tuple], rounds: int, seconds: float, batch: int, targets: Targets) -> bool:
    """pairs: label -> (kit_call, bare_call); interleaved kit, bare, kit, bare ... per round."""
    ok_all = True
    for label, (kit_call, bare_call) in pairs.items():
        for _ in range(3):
            kit_call()
            bare_call()
        kit_lat, bare_lat, ratios = [], [], []
        for _ in range(rounds):
            k = timed(kit_call, seconds / rounds)
            b = timed(bare_call, seconds / rounds)
            kit_lat += k
            bare_lat += b
            ratios.append(np.median(b) / np.median(k))
        kit_tp = batch / np.median(kit_lat)
        bare_tp = batch / np.median(bare_lat)
        ratio = float(np.median(ratios))
        ok = ratio >= 0.95
        ok_all &= ok
        print(f"  batch {batch:>2} {label:<16} kit {kit_tp:10.1f} samples/s   bare ORT {bare_tp:10.1f} samples/s   "
              f"kit/bare {ratio:6.1%} (target >= 95 %): {verdict(ok)}")
        targets.rounds(f"batch {batch} {label}: kit / bare throughput", ratios, 0.95, "higher")
    return ok_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per variant and batch size")
    parser.add_argument("--provider", default=CUDA, choices=[CUDA, CPU],
                        help="CPU runs the same comparison on CPU, to check this script where there is no GPU")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed beyond its noise")
    args = parser.parse_args()
    targets = Targets("bench_gpu.py")

    statuses = discover_providers()
    print("execution providers listed by this onnxruntime wheel, and whether they really run:")
    for s in statuses:
        print(f"  {s.name:<28} {'runs' if s.works else 'DOES NOT LOAD'}: {s.reason}")
    cuda = next((s for s in statuses if s.name == CUDA), None)
    if args.provider == CUDA and (cuda is None or not cuda.works):
        why = cuda.reason if cuda is not None else "this onnxruntime wheel does not list CUDAExecutionProvider"
        print(f"\nNo GPU execution provider loads on this machine ({why}).")
        print("Nothing to measure: the CUDA throughput figures need a machine where CUDA really runs. Exiting 0.")
        return 0

    import onnxruntime as ort

    from kit.engines.iobinding import IoBoundEngine
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.zoo import get_model, sample_feeds

    model = get_model("mobilenet_v2", format="onnx")
    provider = CudaOptions().provider() if args.provider == CUDA else CPU
    device = "cuda" if args.provider == CUDA else "cpu"
    chain = (provider, CPU) if args.provider == CUDA else (CPU,)
    engine = OnnxRuntimeEngine(model, providers=chain)
    bound = IoBoundEngine(engine, close_engine=False)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    bare = ort.InferenceSession(str(model.path), sess_options=so, providers=list(chain))
    assert bare.get_providers()[0] == args.provider and engine.active_providers[0] == args.provider
    in_name, out_name = bare.get_inputs()[0].name, bare.get_outputs()[0].name
    print(f"\nMobileNetV2 on {args.provider}, {args.rounds} interleaved rounds, {args.seconds:g} s per variant")
    ok = True
    for batch in (1, 32):
        feeds = sample_feeds("mobilenet_v2", batch_size=batch)
        x = feeds[in_name]

        def bare_binding(x=x):
            binding = bare.io_binding()
            binding.bind_cpu_input(in_name, x)
            binding.bind_output(out_name, device, 0)
            bare.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()

        on_gpu = bound.to_device(feeds)
        bare_gpu = ort.OrtValue.ortvalue_from_numpy(x, device, 0)

        def bare_resident():
            binding = bare.io_binding()
            binding.bind_ortvalue_input(in_name, bare_gpu)
            binding.bind_output(out_name, device, 0)
            bare.run_with_iobinding(binding)
            return binding.get_outputs()

        got = bound.predict(feeds)[out_name]
        want = engine.predict(feeds)[out_name]
        targets.check(f"batch {batch}: IO-bound answers equal plain ones",
                      np.allclose(got, want, rtol=1e-3, atol=1e-5))
        ok &= measure({
            "plain": (lambda: engine.predict(feeds), lambda: bare.run([out_name], feeds)),
            "io binding": (lambda: bound.predict(feeds), bare_binding),
            "device-resident": (lambda: bound.run_on_device(on_gpu), bare_resident),
        }, args.rounds, args.seconds, batch, targets)
    bound.close()
    engine.close()
    print(f"\nsummary: kit within 5 % of bare ONNX Runtime on {args.provider} everywhere: {verdict(ok)}")
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

"""Quantization, measured: int8 against float32 on the zoo's models, side by side in one run.

(a) MiniLM (all-MiniLM-L6-v2, real weights): dynamic int8 vs float32 at batch 1 and 8 on real
    texts, with cosine similarity of the sentence embeddings (targets: >= 1.7x at batch 1,
    >= 2x at batch 8, cosine >= 0.99; per-tensor int8 misses the cosine, bench_real_models.py shows fixes).
(b) MobileNetV2 (random weights: a speed stand-in, its cosine is agreement with float32 only):
    float32 vs the variant ``recommend`` picks from every standard variant (target: >= 2x at batch 1).
(c) digits CNN: accuracy drop of its int8 variants on the labelled test set (target <= 1 pt).

Every figure comes from ``kit.optimize`` (the same calls the notebooks make); variants are
timed interleaved in rounds, so the ratios are taken under the same machine load.
Run: ``.venv/bin/python benchmarks/bench_quantization.py [--check]``; ``--check`` exits 1 when a
speed-up misses its target by more than the range of its per-round speed-ups, or a quality
target (cosine, accuracy drop: not timings, so no noise) is missed (``kit.profile.targets``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from kit.optimize.evaluate import evaluate, recommend
from kit.optimize.quantize_onnx import quantize_dynamic, standard_variants
from kit.profile.figures import Figure
from kit.profile.sysinfo import environment
from kit.profile.targets import Targets
from kit.zoo import get_model, quality_caveat, zoo_samples


def verdict(value: float, target: float, higher: bool = True) -> str:
    met = value >= target if higher else value <= target
    return f"target {'>=' if higher else '<='} {target:g}: {'MET' if met else 'NOT MET'}"


def bench_minilm(work: Path, seconds: float, targets: Targets) -> None:
    source = get_model("minilm", "onnx")
    int8 = quantize_dynamic(source, out=work / "minilm.dyn.onnx")
    data, _ = zoo_samples("minilm", 16)  # real texts padded to 128 tokens: 10 passages, then 6 sentences
    frame = evaluate([int8], source, data, batch_sizes=(1, 8), output="sentence_embedding", top1=False,
                     min_duration_s=2 * seconds, rounds=10)
    print("\n(a) MiniLM (real weights), dynamic int8 vs float32 (sentence_embedding)")
    print(frame[["name", "batch_size", "size_mb", "p50_ms", "p99_ms", "samples_per_s", "speedup",
                 "cosine"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for batch, target in ((1, 1.7), (8, 2.0)):
        row = frame[(frame["name"] == int8.name) & (frame["batch_size"] == batch)].iloc[0]
        print(f"  batch {batch}: int8 {row['speedup']:.2f}x float32 ({verdict(row['speedup'], target)}), "
              f"cosine {row['cosine']:.5f} ({verdict(row['cosine'], 0.99)})")
        targets.figure(f"minilm int8 speed-up, batch {batch}", Figure.from_columns(row, "speedup", "x"), target,
                       "higher")
        targets.figure(f"minilm int8 cosine, batch {batch}", Figure.point(row["cosine"]), 0.99, "higher")


def bench_mobilenet(work: Path, seconds: float, targets: Targets) -> None:
    source = get_model("mobilenet_v2", "onnx")
    calibration, _ = zoo_samples("mobilenet_v2", 32, split="train")
    variants = standard_variants(source, calibration, work, calibration_samples=32)
    data, _ = zoo_samples("mobilenet_v2", 16)
    frame = evaluate(variants, source, data, batch_sizes=(1,), min_duration_s=seconds, rounds=6)
    # Random-weight MobileNetV2: near-uniform probabilities, so top-1 agreement is noise; gate on cosine.
    rec = recommend(frame, accuracy_budget=None, min_cosine=0.99)
    print("\n(b) MobileNetV2, every standard variant at batch 1 (picked on cosine >= 0.99 vs float32)")
    print(f"  {quality_caveat('mobilenet_v2')}")
    print(frame[["name", "size_mb", "p50_ms", "p99_ms", "speedup", "top1_agreement", "cosine", "ok"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"  kit picks {rec.best}: {rec.speedup:.2f}x float32 at batch 1 ({verdict(rec.speedup, 2.0)})")
    picked = frame[frame["name"] == rec.best].iloc[0]
    targets.figure(f"mobilenet_v2 picked ({rec.best}) speed-up", Figure.from_columns(picked, "speedup", "x"), 2.0,
                   "higher")
    for name, why in rec.reasons.items():
        print(f"    {name}: {why}")


def bench_digits(work: Path, seconds: float, targets: Targets) -> None:
    source = get_model("digits_cnn", "onnx")
    calibration, _ = zoo_samples("digits_cnn", 256, split="train")
    variants = standard_variants(source, calibration, work, calibration_samples=256, float16=False)
    data, labels = zoo_samples("digits_cnn", 450)
    frame = evaluate(variants, source, data, labels=labels, batch_sizes=(1,), min_duration_s=seconds, rounds=4)
    print("\n(c) digits CNN, int8 variants on the labelled test set (450 digits)")
    print(frame[["name", "p50_ms", "speedup", "accuracy", "accuracy_drop_pts", "top1_agreement"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    int8 = frame[frame["name"] != source.name]
    worst = int8["accuracy_drop_pts"].max()
    print(f"  float32 accuracy {100 * frame.iloc[0]['accuracy']:.1f} %; largest int8 accuracy drop "
          f"{worst:.2f} pts ({verdict(worst, 1.0, higher=False)})")
    targets.figure("digits_cnn largest int8 accuracy drop", Figure.point(worst, "pts"), 1.0, "lower")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per variant and batch size")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed beyond its noise")
    args = parser.parse_args()
    targets = Targets("bench_quantization.py")
    env = environment()
    print(f"CPU {env['cpu_model']} ({env['affinity_cores']} cores), int8 features {env['int8_flags']}, "
          f"fast int8: {env['fast_int8']}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-bench-quant-") as tmp:
        work = Path(tmp)
        bench_minilm(work, args.seconds, targets)
        bench_mobilenet(work, args.seconds, targets)
        bench_digits(work, args.seconds / 2, targets)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return targets.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

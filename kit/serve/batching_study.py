"""Dynamic batching under closed-loop load: what the best batcher buys at the busiest point, with its spread.

Notebook 05 draws each engine's throughput-latency curve unbatched and behind a ``DynamicBatcher`` per
``batch_timeout_micros``, then asks one question of the busiest point (the most concurrent clients):
how many times the unbatched samples/s does the best batcher serve? One sweep gives one number, and on
a shared machine one number cannot be told from drift, so the busiest point is run ``rounds`` times in
all (interleaved, A B C A B C) and the gain is the median of the per-round ratios with their range.
CPU time per sample is kept beside it: it is the figure other processes disturb least.

    study = study_batching({"onnxruntime": engine}, {0: BatchingConfig(...), 100_000: BatchingConfig(...)},
                           [1, 4, 16], requests, load, rounds=4)
    study.curves()              # one row per (engine, variant, concurrency)
    study.effect("onnxruntime") # BatchingEffect: best variant, gain and CPU gain as Figures
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kit.config import require_int
from kit.engines.base import Predictor
from kit.errors import ConfigError
from kit.profile.batch_gain import PAYS_AT
from kit.profile.figures import Figure
from kit.profile.loadgen import FeedSource
from kit.profile.results import LoadResult, summary_frame
from kit.profile.scenarios import LoadConfig
from kit.profile.search import concurrency_sweep
from kit.serve.batching import BatchingConfig, DynamicBatcher

if TYPE_CHECKING:
    import pandas as pd

UNBATCHED = "unbatched"


def variant_label(timeout_micros: int) -> str:
    """The curve label of a batcher: ``"batched <timeout> us"``, read back by ``timeout_of``."""
    return f"batched {timeout_micros} us"


def timeout_of(label: str) -> int:
    """The ``batch_timeout_micros`` of a ``variant_label``."""
    try:
        return int(label.split()[1])
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"{label!r} is not a batcher's label ('batched <timeout> us')") from exc


@dataclass(frozen=True)
class BatchingEffect:
    """The best batcher at the busiest point against the same clients unbatched, per round."""

    engine: str
    variant: str
    gain: Figure  # samples/s batched over unbatched
    cpu_gain: Figure  # CPU ms per sample unbatched over batched
    cpu_unbatched_ms: float  # median CPU ms per sample, unbatched
    cpu_batched_ms: float  # the same, behind the best batcher

    @property
    def pays(self) -> bool:
        """Whether the gain clears what two-core timing drift can produce (``batch_gain.PAYS_AT``)."""
        return self.gain.value >= PAYS_AT


@dataclass(frozen=True)
class BatchingStudy:
    """Every curve point (``params["engine"]`` set), the busiest point's rounds, the batchers' batch sizes.

    The best batcher is chosen and its gain read from the same rounds: with a few variants and rounds
    the winner's gain leans high, so a gain near ``PAYS_AT`` is not a clear win.
    """

    results: list[LoadResult]
    repeats: list[LoadResult]  # the busiest point's rounds after the first (the first is in ``results``)
    busiest: list[dict[str, object]]  # engine, round, variant and the run's summary at ``top`` clients
    histograms: dict[tuple[str, str], dict[int, int]]  # (engine, variant) -> rows per batch -> batches run
    top: int

    def curves(self) -> pd.DataFrame:
        return summary_frame(self.results).rename(columns={"label": "variant"})

    def failures(self) -> list[str]:
        """One line per run where queries failed, the busiest point's repeats included: a failed query is
        recorded, never hidden."""
        return [f"{r.params['engine']}, {r.label}, {r.summary()['concurrency']} clients"
                + (f" (round {r.params['round'] + 1})" if "round" in r.params else "")
                + f": {r.errors} queries failed, e.g. {(r.error_messages or ['no message'])[0]}"
                for r in [*self.results, *self.repeats] if r.errors]

    def effect(self, engine: str) -> BatchingEffect:
        """The batcher with the best median samples/s at ``top`` clients, and its per-round gains."""
        import pandas as pd

        rows = pd.DataFrame([r for r in self.busiest if r["engine"] == engine])
        if rows.empty:
            raise ConfigError(f"no busiest-point runs for engine {engine!r}; engines: "
                              f"{sorted({str(r['engine']) for r in self.busiest})}")
        wide = rows.pivot_table(index="round", columns="variant", values=["samples_per_s", "cpu_ms_per_sample"])
        throughput, cpu = wide["samples_per_s"], wide["cpu_ms_per_sample"]
        best = str(throughput.drop(columns=UNBATCHED).median().idxmax())
        return BatchingEffect(engine=engine, variant=best,
                              gain=Figure.from_rounds(throughput[best] / throughput[UNBATCHED], "x", "higher"),
                              cpu_gain=Figure.from_rounds(cpu[UNBATCHED] / cpu[best], "x", "higher"),
                              cpu_unbatched_ms=float(cpu[UNBATCHED].median()),
                              cpu_batched_ms=float(cpu[best].median()))


def study_batching(predictors: Mapping[str, Predictor], batchings: Mapping[int, BatchingConfig],
                   concurrency_levels: Sequence[int], requests: FeedSource, load: LoadConfig,
                   rounds: int = 4) -> BatchingStudy:
    """Closed-loop curves of every engine unbatched and behind one batcher per timeout; the busiest point
    ``rounds`` times in all. ``batchings`` maps each config's own ``batch_timeout_micros`` to it. The engines
    stay open; the batchers made here are stopped."""
    require_int("rounds", rounds)
    if not predictors or not batchings:
        raise ConfigError("study_batching needs at least one engine and one batching config")
    for timeout, config in batchings.items():
        if timeout != config.batch_timeout_micros:
            raise ConfigError(f"batchings maps {timeout!r} to a config with batch_timeout_micros "
                              f"{config.batch_timeout_micros}: key each config by its own timeout")
    for level in concurrency_levels:
        require_int("a concurrency level", level)
    levels = sorted(set(concurrency_levels))
    if not levels:
        raise ConfigError("concurrency levels must name at least one client count")
    top = levels[-1]
    results: list[LoadResult] = []
    repeats: list[LoadResult] = []
    busiest: list[dict[str, object]] = []
    histograms: dict[tuple[str, str], dict[int, int]] = {}
    for engine_name, engine in predictors.items():
        batchers = {variant_label(t): DynamicBatcher(engine, config, name=variant_label(t))
                    for t, config in batchings.items()}
        try:
            variants: dict[str, Predictor] = {UNBATCHED: engine, **batchers}
            sweep = concurrency_sweep(variants, levels, requests, load)
            again = [r for _ in range(rounds - 1) for r in concurrency_sweep(variants, [top], requests, load)]
            for r in sweep:
                r.params["engine"] = engine_name
            for i, r in enumerate(again):
                r.params.update(engine=engine_name, round=1 + i // len(variants))
            busiest += [{"round": r.params.get("round", 0), "variant": r.label, **summary}
                        for r in sweep + again if (summary := r.summary())["concurrency"] == top]
            results += sweep
            repeats += again
            histograms.update({(engine_name, label): b.stats()["batch_size_histogram"]
                               for label, b in batchers.items()})
        finally:
            for batcher in batchers.values():
                batcher.stop()  # the engine stays open for what follows
    return BatchingStudy(results=results, repeats=repeats, busiest=busiest, histograms=histograms, top=top)

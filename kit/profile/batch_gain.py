"""Batch gain: does an engine run a full batch faster per sample than single queries?

A dynamic batcher can only pay where the engine itself does more samples per second at
batch N than at batch 1, so this is the first thing to measure before drawing any batching
curve. Batch 1 and batch N of every engine are measured interleaved in rounds (A B C A B C ...)
so the drift of a shared machine hits all of them alike, and each gain is the median of the
per-round ratios. CPU time per sample is kept beside the wall-clock figure: on a shared
machine it is the figure least disturbed by other processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kit.engines.base import Feeds, Predictor
from kit.errors import ConfigError
from kit.profile.figures import Figure
from kit.profile.loadgen import run
from kit.profile.scenarios import LoadConfig, Offline

if TYPE_CHECKING:
    import pandas as pd

PAYS_AT = 1.2
"""A gain below this is within what two-core timing drift can produce: batching "does not pay"."""


@dataclass(frozen=True)
class BatchGain:
    """Per-round rows of the batch-1 vs batch-N measurement, and the gains they give."""

    batch_size: int
    rows: list[dict[str, object]]

    def _wide(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows).pivot_table(index=["engine", "round"], columns="batch",
                                                   values=["samples_per_s", "cpu_ms_per_sample"])

    def gains(self) -> dict[str, float]:
        """Throughput at batch N over batch 1, median of the per-round ratios, per engine."""
        return {engine: figure.value for engine, figure in self.gain_figures().items()}

    def gain_figures(self) -> dict[str, Figure]:
        """``gains()`` as publishable figures: the median per-round ratio, its min–max over rounds and n."""
        wide = self._wide()
        ratio = wide["samples_per_s"][self.batch_size] / wide["samples_per_s"][1]
        return {str(e): Figure.from_rounds(v, unit="x", better="higher") for e, v in ratio.groupby("engine")}

    def cpu_gains(self) -> dict[str, float]:
        """CPU ms per sample at batch 1 over batch N, median of the per-round ratios, per engine."""
        wide = self._wide()
        ratio = wide["cpu_ms_per_sample"][1] / wide["cpu_ms_per_sample"][self.batch_size]
        return {str(e): float(v) for e, v in ratio.groupby("engine").median().items()}

    def to_frame(self) -> pd.DataFrame:
        """One row per engine: medians at batch 1 and N, and both gains."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        table = frame.groupby(["engine", "batch"])[["samples_per_s", "cpu_ms_per_sample"]].median().unstack()
        table.columns = [f"{'samples/s' if k == 'samples_per_s' else 'CPU ms/sample'} at batch {b}"
                         for k, b in table.columns]
        table[f"throughput gain, batch {self.batch_size} / 1"] = pd.Series(self.gains())
        table["CPU-per-sample gain"] = pd.Series(self.cpu_gains())
        return table

    def pays(self, engine: str) -> bool:
        return self.gains()[engine] >= PAYS_AT

    def describe(self, engine: str) -> str:
        """One sentence: the measured gain and whether server-side batching can pay on this engine."""
        row = self.to_frame().loc[engine]
        rounds = len({r["round"] for r in self.rows})
        return (f"{engine}: a batch of {self.batch_size} runs {self.gains()[engine]:.2f}x the samples/s of batch 1 "
                f"(CPU per sample {row['CPU ms/sample at batch 1']:.3g} ms at batch 1, "
                f"{row[f'CPU ms/sample at batch {self.batch_size}']:.3g} ms at batch {self.batch_size}; medians of "
                f"{rounds} interleaved rounds), so server-side batching "
                f"{'pays' if self.pays(engine) else 'does not pay'} here by wall clock.")


def measure_batch_gain(predictors: Mapping[str, Predictor], one: Feeds, full: Feeds, rounds: int = 2,
                       config: LoadConfig | None = None) -> BatchGain:
    """Measure every predictor at batch 1 (``one``) and at the batch of ``full``, interleaved in rounds.

    ``one`` and ``full`` are the same inputs with 1 and N rows; N is read from ``full``.
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    if not predictors:
        raise ConfigError("measure_batch_gain needs at least one predictor")
    batch_size = int(next(iter(full.values())).shape[0])
    if batch_size < 2:
        raise ConfigError(f"the full batch must hold at least 2 rows, got {batch_size}")
    config = config or LoadConfig(warmup_queries=2, min_duration_s=0.25, min_queries=3)
    rows: list[dict[str, object]] = []
    for r in range(rounds):
        for name, predictor in predictors.items():
            for b, feeds in ((1, one), (batch_size, full)):
                s = run(predictor, Offline(batch_size=b), feeds, config).summary()
                rows.append({"engine": name, "batch": b, "round": r, "samples_per_s": s["samples_per_s"],
                             "cpu_ms_per_sample": s["cpu_ms_per_sample"]})
    return BatchGain(batch_size=batch_size, rows=rows)

"""Choosing execution providers by measuring them: which order is fastest for this model here.

Whether a provider runs at all is ``kit.engines.providers`` (a probe session, no timing);
this module times the working ones on the user's model, interleaved, and orders them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kit.artifacts import ModelArtifact
from kit.engines.onnxruntime import OnnxRuntimeEngine, ProviderArg, import_onnxruntime
from kit.engines.providers import (
    CPU,
    ProviderSpec,
    ProviderStatus,
    discover_providers,
    provider_arg,
    provider_name,
    providers_frame,
)
from kit.errors import ConfigError, KitError, ProviderUnavailableError
from kit.specs import synthetic_feeds

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class ProviderChoice:
    """The fastest working provider order, plus every probe and measurement behind it."""

    order: tuple[ProviderArg, ...]
    statuses: list[ProviderStatus]
    measurements: list[dict[str, Any]] = field(default_factory=list)
    rank_batch_size: int = 1

    @property
    def best(self) -> str:
        return provider_name(self.order[0])

    @property
    def unavailable(self) -> dict[str, str]:
        return {s.name: s.reason for s in self.statuses if not s.works}

    def to_frame(self) -> pd.DataFrame:  # provider x batch size
        import pandas as pd

        return pd.DataFrame(self.measurements)

    def status_frame(self):
        return providers_frame(self.statuses)


def _measure(model: str | os.PathLike[str] | ModelArtifact, providers: Mapping[str, ProviderArg],
             batch_sizes: Sequence[int], config: Any, rounds: int, feeds_fn: Any) -> list[dict[str, Any]]:
    from kit.profile.loadgen import compare

    engines = {}
    rows: list[dict[str, Any]] = []
    try:
        for name, arg in providers.items():
            chain = (arg,) if name == CPU else (arg, CPU)
            try:
                engines[name] = OnnxRuntimeEngine(model, providers=chain)
            except KitError as exc:  # the model (not the probe) fails on this provider: record it
                rows += [{"provider": name, "batch_size": b, "status": f"failed: {exc}"} for b in batch_sizes]
        if not engines:
            return rows
        specs = next(iter(engines.values())).input_specs
        for batch in batch_sizes:
            feeds = feeds_fn(batch) if feeds_fn else synthetic_feeds(specs, batch_size=batch)
            for result in compare(engines, feeds, rounds=rounds, config=config):
                summary = result.summary()
                rows.append({"provider": result.label, "batch_size": batch,
                             "status": "ok" if not result.errors else f"{result.errors} errors",
                             "p50_ms": summary["p50_ms"], "p99_ms": summary["p99_ms"],
                             "samples_per_s": summary["samples_per_s"]})
    finally:
        for engine in engines.values():
            engine.close()
    return rows


def choose_providers(model: str | os.PathLike[str] | ModelArtifact,
                     candidates: Sequence[ProviderSpec] | None = None, batch_sizes: Sequence[int] = (1,),
                     allow_fallback: bool = False, config: Any = None, rounds: int = 3,
                     rank_batch_size: int | None = None, feeds_fn: Any = None) -> ProviderChoice:
    """Measure the working ``candidates`` on ``model`` and return the fastest order, CPU last.

    Candidates default to every provider the wheel lists. One that does not really run
    raises ``ProviderUnavailableError`` naming the reason, unless ``allow_fallback`` is
    set; then it is left out of the order and kept in ``statuses``. The order ranks by
    median latency at ``rank_batch_size`` (default: the largest batch size); providers
    slower than CPU are dropped, since CPU takes every op and would never hand them work.
    ``feeds_fn(batch_size) -> feeds`` overrides the synthetic inputs.
    """
    from kit.profile.scenarios import LoadConfig

    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ConfigError(f"batch_sizes must be ints >= 1, got {list(batch_sizes)!r}")
    rank_batch = max(batch_sizes) if rank_batch_size is None else rank_batch_size
    if rank_batch not in batch_sizes:
        raise ConfigError(f"rank_batch_size {rank_batch} is not one of batch_sizes {list(batch_sizes)}")
    if candidates is None:
        candidates = import_onnxruntime().get_available_providers()
    args = [provider_arg(c) for c in candidates]
    names = [provider_name(a) for a in args]
    if len(set(names)) != len(names):
        raise ConfigError(f"candidates name a provider twice: {names}")
    statuses = discover_providers(args)
    missing = {s.name: s.reason for s in statuses if not s.works}
    if missing and not allow_fallback:
        detail = "; ".join(f"{k}: {v}" for k, v in missing.items())
        raise ProviderUnavailableError(f"requested execution provider(s) {list(missing)} do not run here ({detail}); "
                                       f"pass allow_fallback=True to measure only the working ones")
    for name, reason in missing.items():
        log.warning("provider %s left out: %s", name, reason)
    working = {n: a for n, a in zip(names, args) if n not in missing}
    if CPU not in working:
        working[CPU] = CPU  # the fallback is always measured, so the order can be justified
    config = config or LoadConfig(warmup_queries=3, min_duration_s=0.6, min_queries=10)
    rows = _measure(model, working, batch_sizes, config, rounds, feeds_fn)
    rows += [{"provider": n, "batch_size": b, "status": f"unavailable: {r}"} for n, r in missing.items()
             for b in batch_sizes]
    ranked = sorted((r for r in rows if r["batch_size"] == rank_batch and r["status"] == "ok"),
                    key=lambda r: r["p50_ms"])
    order: list[ProviderArg] = []
    for row in ranked:
        if row["provider"] == CPU:
            break
        order.append(working[row["provider"]])
    order.append(working[CPU])
    return ProviderChoice(order=tuple(order), statuses=statuses, measurements=rows, rank_batch_size=rank_batch)

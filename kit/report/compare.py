"""Compare two report runs: headline figures side by side, relative change, noise, a CI gate.

``kit report`` leaves ``run.json`` and ``<notebook>.results.json`` in each run folder; this reads the
headline figures of both runs, says how much each moved and whether that is beyond run-to-run noise,
and flags a *regression* when a figure moved the wrong way by more than a threshold (and more than
the noise). ``kit compare A B --threshold 10`` exits 1 on any regression, so CI can gate on it.

Noise: a headline figure may carry its own spread, as a sibling ``<name>_spread`` or as
``{"value": v, "spread": s}``; a change is beyond noise when it exceeds both runs' spreads added,
and never less than ``noise_pct`` of the older value (a floor for figures published without one).

Which way is worse comes from the figure's name (``*_ms``, ``latency``, ``size`` are lower-is-better;
``qps``, ``throughput``, ``accuracy``, ``speedup`` higher-is-better; chosen settings such as
``best_batch_size`` or ``threads`` have no better side); figures of unknown direction are shown but
never gate. A notebook that was ok in the older run and failed in the newer one is a
regression too, and so is a figure that was a number in the older run and in the newer one is
NaN, infinite, not a number at all, or gone (verdict ``lost``): a gate that cannot compare a
figure fails, unless the caller opts out with ``allow_missing`` (``kit compare --allow-missing``).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.artifacts import atomic_write_bytes
from kit.errors import ConfigError

_SETTING = re.compile(r"(batch_size$|threads$|timeout_(ms|s|micros)$|_level$|variant$|^trials$|seed$)", re.I)
_WORSE_UP = re.compile(r"(drop|loss|error|fail|overhead|regress)", re.I)
_HIGHER = re.compile(r"(qps|throughput|per_s(ec)?$|speedup|accuracy|hit_rate|samples_per|gain|auc|f1|"
                     r"cosine|agreement|efficiency)", re.I)
_LOWER = re.compile(r"(latency|_ms($|_)|^p\d\d|_s$|seconds|time|size|bytes|_mb$|_kb$|memory|rss|wait|queue)",
                    re.I)


def direction(name: str) -> str:
    """``"higher"``, ``"lower"`` (is better) or ``"?"`` from a metric's name."""
    leaf = name.rsplit("/", 1)[-1]
    if _SETTING.search(leaf):  # a chosen setting (best_batch_size), not a figure with a better side
        return "?"
    if _WORSE_UP.search(leaf):  # accuracy_drop, error_rate: words that flip a "higher" stem
        return "lower"
    if _HIGHER.search(leaf):
        return "higher"
    if _LOWER.search(leaf):
        return "lower"
    return "?"


@dataclass
class RunRecord:
    """What compare needs from one run folder."""

    folder: Path
    started: float
    profile: str
    status: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (value, spread)
    environment: dict[str, Any] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # name -> what it was instead of a number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _headline_metrics(notebook: str, headline: Mapping[str, Any],
                      unreadable: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Numeric figures (NaN and inf kept as they are); anything else is noted in ``unreadable``."""
    out: dict[str, tuple[float, float]] = {}
    for key, raw in headline.items():
        if key.endswith("_spread") and key[:-len("_spread")] in headline:
            continue
        if isinstance(raw, Mapping) and "value" in raw:
            raw = raw["value"]
            value, spread = _number(raw), _number(headline[key].get("spread")) or 0.0
        else:
            value, spread = _number(raw), _number(headline.get(f"{key}_spread")) or 0.0
        if value is not None:
            out[f"{notebook}/{key}"] = (value, abs(spread) if math.isfinite(spread) else 0.0)
        else:
            unreadable[f"{notebook}/{key}"] = repr(raw)[:60]
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid UTF-8 JSON: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _bad(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path} is not a kit run summary: {what}")


def load_run(folder: str | os.PathLike[str]) -> RunRecord:
    """Read a ``kit report`` output folder (``run.json`` plus each ``*.results.json``)."""
    folder = Path(folder)
    summary_path = folder / "run.json"
    if not summary_path.is_file():
        raise ConfigError(f"{folder} is not a kit report folder: no run.json (made by `kit report --out {folder}`)")
    summary = _read_json(summary_path)
    if not isinstance(summary, dict):
        raise _bad(summary_path, f"a JSON object is expected, found {type(summary).__name__}")
    started = summary.get("started", 0.0)
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not math.isfinite(started):
        raise _bad(summary_path, f"'started' must be a number (seconds since the epoch), found {started!r:.60}")
    notebooks = summary.get("notebooks", [])
    if not isinstance(notebooks, list) or not all(isinstance(nb, dict) for nb in notebooks):
        raise _bad(summary_path, "'notebooks' must be a list of objects, one per notebook run")
    environment = summary.get("environment", {})
    record = RunRecord(folder=folder, started=float(started), profile=str(summary.get("profile", "?")),
                       environment=dict(environment) if isinstance(environment, dict) else {})
    for i, nb in enumerate(notebooks):
        name = nb.get("notebook")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise _bad(summary_path, f"notebook entry {i} has no usable 'notebook' name (found {name!r:.60})")
        record.status[name] = str(nb.get("status", "?"))
        headline = nb.get("headline") or {}
        headline = dict(headline) if isinstance(headline, dict) else {}
        results = folder / f"{name}.results.json"
        if results.is_file():
            extra = _read_json(results)
            extra = extra.get("headline") if isinstance(extra, dict) else None
            if extra is not None and not isinstance(extra, dict):
                raise ConfigError(f"{results}: 'headline' must be an object of figures")
            headline.update(extra or {})
        record.metrics.update(_headline_metrics(name, headline, record.unreadable))
    return record


@dataclass
class Comparison:
    """The side-by-side table and the regressions it found."""

    older: RunRecord
    newer: RunRecord
    frame: Any  # pandas.DataFrame
    threshold_pct: float | None
    noise_pct: float
    allow_missing: bool = False

    @property
    def regressions(self) -> list[str]:
        return list(self.frame.loc[self.frame["regression"], "metric"])

    @property
    def failed(self) -> bool:
        """Whether a CI gate should fail: a threshold was given and something regressed."""
        return self.threshold_pct is not None and bool(self.regressions)


def compare_runs(older: str | os.PathLike[str] | RunRecord, newer: str | os.PathLike[str] | RunRecord,
                 threshold_pct: float | None = None, noise_pct: float = 5.0,
                 directions: Mapping[str, str] | None = None, allow_missing: bool = False) -> Comparison:
    """Compare two runs; ``older``/``newer`` are swapped when their start times say otherwise.

    ``directions`` overrides the name-based guess per metric (``{"03_x/score": "higher"}``).
    A figure that was a finite number in the older run and is NaN, infinite, not a number or
    absent in the newer one is ``lost``: a regression when a threshold is given, unless
    ``allow_missing``.
    """
    if threshold_pct is not None and not (threshold_pct >= 0 and math.isfinite(threshold_pct)):
        raise ConfigError(f"threshold must be a percentage >= 0, got {threshold_pct}")
    if not (noise_pct >= 0 and math.isfinite(noise_pct)):
        raise ConfigError(f"noise floor must be a percentage >= 0, got {noise_pct}")
    for name, value in (directions or {}).items():
        if value not in ("higher", "lower", "?"):
            raise ConfigError(f"direction of {name!r} must be 'higher', 'lower' or '?', got {value!r}")
    import pandas as pd

    a = older if isinstance(older, RunRecord) else load_run(older)
    b = newer if isinstance(newer, RunRecord) else load_run(newer)
    if b.started < a.started:
        a, b = b, a
    gate = threshold_pct if threshold_pct is not None else math.inf
    rows = []
    for name in sorted(set(a.metrics) | set(b.metrics) | (set(b.unreadable) & set(a.metrics))):
        va, sa = a.metrics.get(name, (math.nan, 0.0))
        vb, sb = b.metrics.get(name, (math.nan, 0.0))
        way = (directions or {}).get(name, direction(name))
        change = (vb - va) / abs(va) * 100 if va and math.isfinite(va) and math.isfinite(vb) else math.nan
        noise = max(sa + sb, noise_pct / 100 * abs(va)) if math.isfinite(va) else math.nan
        beyond = bool(math.isfinite(vb - va) and abs(vb - va) > noise)
        worse = (way == "lower" and vb > va) or (way == "higher" and vb < va)
        if math.isfinite(va) and not math.isfinite(vb):
            newer_as: Any = b.unreadable.get(name, "absent") if name not in b.metrics else vb
            rows.append({"metric": name, "older": va, "newer": newer_as, "change_pct": math.nan, "noise": noise,
                         "beyond_noise": True, "better": way, "verdict": "lost",
                         "regression": threshold_pct is not None and not allow_missing})
            continue
        rows.append({"metric": name, "older": va, "newer": vb, "change_pct": change, "noise": noise,
                     "beyond_noise": beyond, "better": way, "verdict": _verdict(beyond, worse, way),
                     "regression": bool(beyond and worse and abs(change) > gate)})
    for nb in sorted(set(a.status) | set(b.status)):
        sa_, sb_ = a.status.get(nb, "absent"), b.status.get(nb, "absent")
        if sa_ != sb_:
            broke = sa_ == "ok" and sb_ != "ok"
            rows.append({"metric": f"{nb}/status", "older": sa_, "newer": sb_, "change_pct": math.nan,
                         "noise": math.nan, "beyond_noise": True, "better": "ok",
                         "verdict": "broke" if broke else "changed",
                         "regression": broke and threshold_pct is not None})
    columns = ["metric", "older", "newer", "change_pct", "noise", "beyond_noise", "better", "verdict", "regression"]
    return Comparison(a, b, pd.DataFrame(rows, columns=columns), threshold_pct, noise_pct, allow_missing)


def _verdict(beyond: bool, worse: bool, way: str) -> str:
    if not beyond:
        return "within noise"
    if way == "?":
        return "changed"
    return "worse" if worse else "better"


def write_html(comparison: Comparison, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the comparison page into the newer run's folder and refresh its index to link it."""
    from kit.report.index import load_summary, write_index

    default = comparison.newer.folder / f"compare_{comparison.older.folder.name}.html"
    target = Path(path) if path is not None else default
    frame = comparison.frame

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.4g}"
        return html.escape(str(value))

    rows = []
    for _, row in frame.iterrows():
        css = "bad" if row["regression"] else row["verdict"].replace(" ", "-")
        change = "" if isinstance(row["change_pct"], float) and math.isnan(row["change_pct"]) \
            else f"{row['change_pct']:+.1f} %"
        rows.append(f'<tr class="{cell(css)}"><td>{cell(row["metric"])}</td><td>{cell(row["older"])}</td>'
                    f'<td>{cell(row["newer"])}</td><td>{change}</td><td>{cell(row["noise"])}</td>'
                    f'<td>{cell(row["better"])}</td><td>{cell(row["verdict"])}</td>'
                    f'<td>{"REGRESSION" if row["regression"] else ""}</td></tr>')
    gate = "no threshold (report only)" if comparison.threshold_pct is None \
        else f"threshold {comparison.threshold_pct:g} %: {len(comparison.regressions)} regression(s)"
    env_keys = ("git_commit", "cpu_model", "affinity_cores", "python")
    old_env, new_env = comparison.older.environment, comparison.newer.environment
    env_rows = "".join(f"<tr><td>{k}</td><td>{cell(old_env.get(k, ''))}</td><td>{cell(new_env.get(k, ''))}</td></tr>"
                       for k in env_keys)
    libs = sorted(set(old_env.get("libraries", {})) | set(new_env.get("libraries", {})))
    env_rows += "".join(f"<tr><td>{html.escape(k)}</td><td>{cell(old_env.get('libraries', {}).get(k, ''))}</td>"
                        f"<td>{cell(new_env.get('libraries', {}).get(k, ''))}</td></tr>"
                        for k in libs if old_env.get("libraries", {}).get(k) != new_env.get("libraries", {}).get(k))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kit comparison</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.bad td {{ background: #fdd; font-weight: bold; }} tr.worse td {{ color: #b00; }} tr.better td {{ color: #070; }}
tr.within-noise td {{ color: #666; }}
</style></head><body>
<h1>Comparison of two report runs</h1>
<p>Older: <code>{html.escape(str(comparison.older.folder))}</code> (profile {html.escape(comparison.older.profile)});
newer: <code>{html.escape(str(comparison.newer.folder))}</code> (profile {html.escape(comparison.newer.profile)}).
Change is relative to the older run; it is beyond noise when it exceeds both runs' spreads added, and at
least {comparison.noise_pct:g} % of the older value. {html.escape(gate)}.</p>
<table><tr><th>metric</th><th>older</th><th>newer</th><th>change</th><th>noise</th><th>better</th>
<th>verdict</th><th>gate</th></tr>
{''.join(rows)}</table>
<h2>What the runs ran on</h2>
<p>Commit, machine and the library versions that differ; each folder's <code>environment.json</code> and
<code>*.params.json</code> hold the rest, to rerun either.</p>
<table><tr><th></th><th>older</th><th>newer</th></tr>{env_rows}</table>
</body></html>
"""
    atomic_write_bytes(target, page.encode("utf-8"))
    if target.parent == comparison.newer.folder and (comparison.newer.folder / "run.json").is_file():
        write_index(comparison.newer.folder, load_summary(comparison.newer.folder))
    return target

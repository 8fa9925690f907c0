"""Compare two report runs: headline figures side by side, each change with its interval, a CI gate.

``kit report`` leaves ``run.json`` and ``<notebook>.results.json`` in each run folder; this reads the
headline figures of both runs, says how much each moved, whether that is beyond run-to-run noise,
and flags a *regression* when a figure moved the wrong way beyond noise and by more than a
threshold. ``kit compare A B --threshold 10`` exits 1 on any regression, so CI can gate on it.

Figures are read with ``kit.profile.figures.Figure.from_json``: a published ``Figure``
(``{"value", "low", "high", "n", "unit", "better"}``: the median over ``n`` rounds and their
min–max), the older ``{"value": v, "spread": s}`` or a sibling ``<name>_spread`` (read as the
interval ``v ± s`` over an unknown number of rounds, taken as 2: never enough to decide), or a
plain number (no spread known).

The noise rule:

- both runs published the figure with its spread: the change is *beyond noise* when the two
  intervals do not overlap (the newer run's whole range lies above, or below, the older one's)
  *and* that could hardly happen by chance. Two runs of the same thing, with ``n`` and ``m``
  rounds whose order is random, give ranges that do not overlap with probability
  ``2 / C(n + m, n)`` (``apart_chance``): one time in three for 2 rounds each, one in ten for 3,
  one in 35 for 4. Ranges that came apart with a chance above ``alpha`` (default 0.05) are
  ``undecided``: too few rounds to tell a change from noise, shown but never gated (publish 4+
  rounds to make a figure decidable). Each change is reported with its interval: from the
  smallest to the largest change the two ranges allow (``change_low_pct``–``change_high_pct``),
  so "beyond noise" is "the interval excludes 0, on enough rounds".
- either run published a bare number: no run measured its own noise, so a flat floor stands in
  for it: the change must also exceed ``noise_pct`` of the older value. Such rows say
  ``noise = "floor 5 %"`` (marked ``*`` in the CLI and the HTML page) instead of ``"spreads"``.

A regression (what fails the gate) is a change that is worse, beyond noise, *and* larger than
``threshold_pct`` even at the near end of its interval: the smallest change the two ranges allow
exceeds the threshold, not just the medians' change. Why: a report publishes some 30 timing
figures, each of which comes apart between two identical runs one time in 35 (4 rounds), and
load times also drift between runs by more than their rounds spread; gating on the medians
flagged 2 figures of two identical full runs here (+33.7 % [+0.3, +52.7] and +35.7 % [+12.7,
+73.0] at threshold 10), the first of which the runs cannot tell from a 1 % change. A bare
number's interval is the change itself. Which way is worse comes from the figure's own
``better`` when it says (``"?"`` included: a share or a chosen setting), else from its name
(``*_ms``, ``latency``, ``size`` are lower-is-better; ``qps``, ``throughput``, ``accuracy``,
``speedup`` higher-is-better; chosen settings such as ``best_batch_size`` or ``threads`` have no
better side); figures of unknown direction are shown but never gate. A notebook that was ok in the
older run and failed in the newer one is a regression too, and so is a figure that was a number in
the older run and in the newer one is NaN, infinite, not a number at all, or gone (verdict
``lost``): a gate that cannot compare a figure fails, unless the caller opts out with
``allow_missing`` (``kit compare --allow-missing``).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kit.artifacts import atomic_write_bytes
from kit.errors import ConfigError
from kit.profile.figures import Figure

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
    metrics: dict[str, Figure] = field(default_factory=dict)  # "notebook/figure" -> the figure as published
    environment: dict[str, Any] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # name -> what it was instead of a number
    declared: set[str] = field(default_factory=set)  # names whose figure says its better side itself ("?" too)


def _headline_metrics(notebook: str, headline: Mapping[str, Any], unreadable: dict[str, str],
                      declared: set[str] | None = None) -> dict[str, Figure]:
    """Numeric figures (NaN and inf kept as they are); anything else is noted in ``unreadable``.

    Names of figures that state their own ``better`` side go into ``declared``.
    """
    out: dict[str, Figure] = {}
    for key, raw in headline.items():
        if key.endswith("_spread") and key[:-len("_spread")] in headline:
            continue
        if not isinstance(raw, Mapping) and f"{key}_spread" in headline:  # the oldest form: a sibling spread
            raw = {"value": raw, "spread": headline[f"{key}_spread"]}
        figure = Figure.from_json(raw)
        if figure is not None:
            out[f"{notebook}/{key}"] = figure
            if declared is not None and isinstance(raw, Mapping) and raw.get("better") in ("lower", "higher", "?"):
                declared.add(f"{notebook}/{key}")
        else:
            unreadable[f"{notebook}/{key}"] = repr(raw.get("value") if isinstance(raw, Mapping) else raw)[:60]
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
        # one model: ``00_engines``; several (kit report --model A --model B): ``<model folder>/00_engines``
        html = nb.get("html")
        sub = PurePosixPath(str(html)).parent.as_posix() if nb.get("model") and html else ""
        key = f"{sub}/{name}" if sub and sub != "." else name
        record.status[key] = str(nb.get("status", "?"))
        headline = nb.get("headline") or {}
        headline = dict(headline) if isinstance(headline, dict) else {}
        results = (folder / sub if key != name else folder) / f"{name}.results.json"
        if results.is_file():
            extra = _read_json(results)
            extra = extra.get("headline") if isinstance(extra, dict) else None
            if extra is not None and not isinstance(extra, dict):
                raise ConfigError(f"{results}: 'headline' must be an object of figures")
            headline.update(extra or {})
        record.metrics.update(_headline_metrics(key, headline, record.unreadable, record.declared))
    return record


ALPHA = 0.05
"""The largest ``apart_chance`` at which ranges that do not overlap count as beyond noise (4+ rounds each)."""


def apart_chance(n_older: int, n_newer: int) -> float:
    """The probability that two runs of one unchanged thing, with ``n_older`` and ``n_newer`` rounds,
    publish min–max ranges that do not overlap: ``2 / C(n_older + n_newer, n_older)``.

    With exchangeable rounds (no drift between the runs), every ordering of the pooled rounds is
    equally likely, and the ranges come apart only when all of one run's rounds fall below all of
    the other's. A percentile's bootstrap interval (``Figure.from_samples``, n = its samples) gives
    about 0 here, and two non-overlapping 95 % intervals are strong evidence too.
    """
    return 2 / math.comb(int(n_older) + int(n_newer), int(n_older))


@dataclass
class Comparison:
    """The side-by-side table and the regressions it found."""

    older: RunRecord
    newer: RunRecord
    frame: Any  # pandas.DataFrame
    threshold_pct: float | None
    noise_pct: float
    allow_missing: bool = False
    alpha: float = ALPHA

    @property
    def undecided(self) -> list[str]:
        """Figures whose ranges came apart on too few rounds to call it (``apart_chance`` above ``alpha``)."""
        return list(self.frame.loc[self.frame["verdict"] == "undecided", "metric"])

    @property
    def regressions(self) -> list[str]:
        return list(self.frame.loc[self.frame["regression"], "metric"])

    @property
    def failed(self) -> bool:
        """Whether a CI gate should fail: a threshold was given and something regressed."""
        return self.threshold_pct is not None and bool(self.regressions)


def compare_runs(older: str | os.PathLike[str] | RunRecord, newer: str | os.PathLike[str] | RunRecord,
                 threshold_pct: float | None = None, noise_pct: float = 5.0,
                 directions: Mapping[str, str] | None = None, allow_missing: bool = False,
                 alpha: float = ALPHA) -> Comparison:
    """Compare two runs; ``older``/``newer`` are swapped when their start times say otherwise.

    ``directions`` overrides the name-based guess per metric (``{"03_x/score": "higher"}``).
    ``alpha``: the largest ``apart_chance`` at which ranges that do not overlap count as beyond noise.
    A figure that was a finite number in the older run and is NaN, infinite, not a number or
    absent in the newer one is ``lost``: a regression when a threshold is given, unless
    ``allow_missing``.
    """
    if threshold_pct is not None and not (threshold_pct >= 0 and math.isfinite(threshold_pct)):
        raise ConfigError(f"threshold must be a percentage >= 0, got {threshold_pct}")
    if not (noise_pct >= 0 and math.isfinite(noise_pct)):
        raise ConfigError(f"noise floor must be a percentage >= 0, got {noise_pct}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be a probability in (0, 1), got {alpha}")
    for name, value in (directions or {}).items():
        if value not in ("higher", "lower", "?"):
            raise ConfigError(f"direction of {name!r} must be 'higher', 'lower' or '?', got {value!r}")
    import pandas as pd

    a = older if isinstance(older, RunRecord) else load_run(older)
    b = newer if isinstance(newer, RunRecord) else load_run(newer)
    if b.started < a.started:
        a, b = b, a
    gate = threshold_pct if threshold_pct is not None else math.inf
    nan = math.nan
    rows = []
    for name in sorted(set(a.metrics) | set(b.metrics) | (set(b.unreadable) & set(a.metrics))):
        fa = a.metrics.get(name) or Figure.point(nan)
        fb = b.metrics.get(name) or Figure.point(nan)
        way = (directions or {}).get(name) or _better(name, (a, fa), (b, fb)) or direction(name)
        va, vb = fa.value, fb.value
        both = fa.has_spread and fb.has_spread
        noise = "spreads" if both else f"floor {noise_pct:g} %"
        row = {"metric": name, "older": va, "older_low": fa.low, "older_high": fa.high, "older_n": fa.n,
               "newer": vb, "newer_low": fb.low, "newer_high": fb.high, "newer_n": fb.n,
               "unit": fb.unit or fa.unit, "noise": noise, "better": way}
        if math.isfinite(va) and not math.isfinite(vb):
            newer_as: Any = b.unreadable.get(name, "absent") if name not in b.metrics else vb
            rows.append({**row, "newer": newer_as, "change_pct": nan, "change_low_pct": nan, "change_high_pct": nan,
                         "beyond_noise": True, "verdict": "lost",
                         "regression": threshold_pct is not None and not allow_missing})
            continue
        if name not in a.metrics and math.isfinite(vb):  # measured only by the newer run
            rows.append({**row, "change_pct": nan, "change_low_pct": nan, "change_high_pct": nan,
                         "beyond_noise": False, "verdict": "new", "regression": False})
            continue
        finite = math.isfinite(va) and math.isfinite(vb)
        scale = abs(va) if finite and va else nan
        gap_low, gap_high = fb.low - fa.high, fb.high - fa.low  # the smallest and largest change the ranges allow
        change, change_low, change_high = ((vb - va) / scale * 100, gap_low / scale * 100, gap_high / scale * 100)
        beyond = bool(finite and (gap_low > 0 or gap_high < 0))  # the two ranges do not overlap
        chance = apart_chance(fa.n, fb.n) if both else math.nan
        undecided = beyond and both and chance > alpha  # apart, but on too few rounds to rule out chance
        beyond = beyond and not undecided
        if finite and not both:  # a run without its own spread: a flat floor stands in for its noise
            beyond = beyond and abs(vb - va) > noise_pct / 100 * abs(va)
        worse = (way == "lower" and vb > va) or (way == "higher" and vb < va)
        near = change_low if vb > va else change_high  # the change nearest to none the two ranges allow
        rows.append({**row, "change_pct": change, "change_low_pct": change_low, "change_high_pct": change_high,
                     "apart_chance": chance, "beyond_noise": beyond,
                     "verdict": "undecided" if undecided else _verdict(beyond, worse, way),
                     "regression": bool(beyond and worse and abs(near) > gate)})
    for nb in sorted(set(a.status) | set(b.status)):
        sa_, sb_ = a.status.get(nb, "absent"), b.status.get(nb, "absent")
        if sa_ != sb_:
            broke = sa_ == "ok" and sb_ != "ok"
            rows.append({"metric": f"{nb}/status", "older": sa_, "newer": sb_, "change_pct": math.nan,
                         "noise": "", "beyond_noise": True, "better": "ok",
                         "verdict": "broke" if broke else "changed",
                         "regression": broke and threshold_pct is not None})
    columns = ["metric", "older", "older_low", "older_high", "older_n", "newer", "newer_low", "newer_high",
               "newer_n", "unit", "change_pct", "change_low_pct", "change_high_pct", "apart_chance", "noise",
               "beyond_noise",
               "better", "verdict", "regression"]
    return Comparison(a, b, pd.DataFrame(rows, columns=columns), threshold_pct, noise_pct, allow_missing, alpha)


def _better(name: str, *runs: tuple[RunRecord, Figure]) -> str | None:
    """The better side the figure itself declares (the newer run's first; ``"?"`` counts), if any."""
    return next((f.better for run, f in reversed(runs) if name in run.declared), None)


def _verdict(beyond: bool, worse: bool, way: str) -> str:
    if not beyond:
        return "within noise"
    if way == "?":
        return "changed"
    return "worse" if worse else "better"


def _figure_text(value: Any, low: Any, high: Any, n: Any) -> str:
    """``12.3 [11.9–12.8] n=5``, or the bare value when no spread is known."""
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return ""
    if isinstance(n, (int, float)) and n >= 2 and math.isfinite(low) and math.isfinite(high):
        return f"{value:.4g} [{low:.4g}–{high:.4g}] n={int(n)}"
    return f"{value:.4g}"


def _change_text(row: Mapping[str, Any]) -> str:
    change = row.get("change_pct")
    if not isinstance(change, float) or math.isnan(change):
        return ""
    low, high = row.get("change_low_pct", math.nan), row.get("change_high_pct", math.nan)
    interval = f" [{low:+.1f}, {high:+.1f}]" if low != high and math.isfinite(low) and math.isfinite(high) else ""
    return f"{change:+.1f} %{interval}"


def table(comparison: Comparison) -> Any:
    """The comparison as text, one row per figure: each run's value with its range and n, the change
    with its interval, and ``*`` on rows judged by the flat noise floor (no spread published)."""
    import pandas as pd

    rows = []
    for _, row in comparison.frame.iterrows():
        floor = str(row["noise"]).startswith("floor")
        rows.append({"metric": row["metric"],
                     "older": _figure_text(row["older"], row["older_low"], row["older_high"], row["older_n"]),
                     "newer": _figure_text(row["newer"], row["newer_low"], row["newer_high"], row["newer_n"]),
                     "unit": "" if not isinstance(row["unit"], str) else row["unit"],
                     "change [interval]": _change_text(row), "better": row["better"],
                     "verdict": row["verdict"] + (" *" if floor and row["verdict"] in (
                         "within noise", "worse", "better", "changed") else ""),
                     "gate": "REGRESSION" if row["regression"] else ""})
    return pd.DataFrame(rows, columns=["metric", "older", "newer", "unit", "change [interval]", "better", "verdict",
                                       "gate"])


UNDECIDED_NOTE = ("undecided: the ranges came apart, but on too few rounds to rule out chance (alpha {alpha:g}); "
                  "publish 4 or more rounds to make these figures gate: {names}")
FLOOR_NOTE = ("* judged by the flat noise floor ({pct:g} % of the older value): a run published this figure "
              "without its spread")


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
    for (_, row), (_, text) in zip(frame.iterrows(), table(comparison).iterrows()):
        css = "bad" if row["regression"] else row["verdict"].replace(" ", "-")
        rows.append(f'<tr class="{cell(css)}">' + "".join(f"<td>{cell(text[c])}</td>" for c in text.index)
                    + "</tr>")
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
tr.within-noise td {{ color: #666; }} tr.undecided td {{ color: #a60; }}
</style></head><body>
<h1>Comparison of two report runs</h1>
<p>Older: <code>{html.escape(str(comparison.older.folder))}</code> (profile {html.escape(comparison.older.profile)});
newer: <code>{html.escape(str(comparison.newer.folder))}</code> (profile {html.escape(comparison.newer.profile)}).
Each figure is its median with the range over its rounds and their number n. The change is relative to the
older run, with its interval: the smallest to the largest change the two ranges allow. It is beyond noise
when the two ranges do not overlap and two runs of the same thing would rarely do so (chance at most
{comparison.alpha:g}: 2 / C(n + m, n) for n and m rounds; "undecided" rows came apart on fewer rounds than
that needs, and never gate); a regression when it is also worse and larger than the threshold even at the
near end of its interval.
{html.escape(gate)}.</p>
<table><tr>{"".join(f"<th>{html.escape(c)}</th>" for c in table(comparison).columns)}</tr>
{''.join(rows)}</table>
<p>{html.escape(FLOOR_NOTE.format(pct=comparison.noise_pct))}.</p>
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

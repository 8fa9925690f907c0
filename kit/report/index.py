"""The report index: the page a person reads first, linking every notebook report.

At the top, the machine and software in one line and the run's parameters; then one card per
notebook (per model, when several): its title linking to its HTML, status and duration, the
findings it stated as sentences (``kit.finding``), a thumbnail of its key plot, skipped sections,
the error of a failed run, its artifacts with their sizes and its headline figures. Plain HTML and
CSS: no JavaScript and no embedded notebook. Every link is relative and names a file inside the
run folder that exists when the page is written, so a copied folder keeps working.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

KEY_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "tensorflow", "ai-edge-litert", "onnx", "numpy", "kit")
"""Libraries named in the environment line; all of them are listed under it."""
MAX_ARTIFACT_LINKS = 12
STATUSES = ("ok", "failed", "skipped", "pending")

CSS = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; color: #222; line-height: 1.45; margin: 0 auto; max-width: 1200px;
       padding: 1em 1.5em; overflow-wrap: anywhere; }
h1 { margin: .2em 0 .4em; } h2 { margin-top: 1.4em; border-bottom: 1px solid #ddd; }
.env, .run { margin: .3em 0; } .env { color: #333; } details { font-size: .9em; color: #444; }
section.nb { display: flex; flex-wrap: wrap; gap: 1em; border: 1px solid #ddd; border-left: 6px solid #999;
             border-radius: 4px; padding: .8em 1em; margin: 1em 0; }
section.ok { border-left-color: #2a7a3a; } section.failed { border-left-color: #c0392b; }
.thumb { flex: 0 1 320px; max-width: 100%; }
img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; }
.body { flex: 1 1 420px; min-width: 0; }
h3 { margin: 0 0 .2em; } .meta { margin: 0 0 .4em; color: #555; }
.status { font-weight: bold; } .ok .status { color: #2a7a3a; } .failed .status, .error { color: #c0392b; }
.skipped .status { color: #666; }
ul { margin: .3em 0; padding-left: 1.3em; } .findings li { margin: .2em 0; }
.figures, .artifacts, .files, .skips { font-size: .9em; color: #444; margin: .4em 0; }
code { font-size: .95em; }
"""


def _esc(value: Any) -> str:
    """Text or attribute value, escaped (quotes too): names in a run can hold anything."""
    return html.escape(str(value), quote=True)


def _href(path: Any) -> str:
    """A link to a file beside the page: percent-encoded (so no ``javascript:`` scheme survives), then escaped."""
    return _esc(quote(str(path)))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_figure(value: Any) -> str:
    """A headline value as text: ``12.3 ms (11.9–12.8, n=5; lower is better)`` for a measured
    figure (``{"value", "low", "high", "spread", "n", "unit", "better"}``, whichever are present)."""
    if isinstance(value, Mapping) and "value" in value:
        if value["value"] is None:  # NaN, as JSON has it
            return "n/a"
        unit = f" {value['unit']}" if value.get("unit") else ""
        text = f"{_number(value['value'])}{unit}"
        details = []
        once = isinstance(value.get("n"), int) and value["n"] < 2  # measured once: a range would say nothing
        if value.get("low") is not None and value.get("high") is not None and not once:
            details.append(f"{_number(value['low'])}–{_number(value['high'])}")
        if value.get("spread") is not None:
            details.append(f"±{_number(value['spread'])}")
        if value.get("n") is not None and not once:
            details.append(f"n={value['n']}")
        better = f"{value['better']} is better" if value.get("better") in ("lower", "higher") else ""
        inside = "; ".join(p for p in (", ".join(details), better) if p)
        return f"{text} ({inside})" if inside else text
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_figure(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_figure(v) for v in value)
    if value is None:
        return "n/a"
    return _number(value)


def label(key: Any) -> str:
    """A headline key as words: ``p50_ms`` -> ``p50 ms``."""
    return str(key).replace("_", " ")


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "size unknown"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _local(out_dir: Path, rel: Any) -> str | None:
    """``rel`` when it names an existing file inside ``out_dir`` (so its link resolves), else None."""
    if not isinstance(rel, str) or not rel:
        return None
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or ":" in rel:
        return None
    return rel if (out_dir / path).is_file() else None


def _link(out_dir: Path, rel: Any, text: str) -> str:
    """``text`` (escaped) linked to ``rel`` when that file is in the run folder; plain text otherwise."""
    target = _local(out_dir, rel)
    return f'<a href="{_href(target)}">{_esc(text)}</a>' if target else _esc(text)


def environment_line(env: Mapping[str, Any]) -> str:
    """The machine and software in one line (HTML), then every library version folded below it."""
    parts = [f"{env.get('cpu_model') or 'unknown CPU'}" + (f" ({env['machine']})" if env.get("machine") else "")]
    if env.get("affinity_cores") is not None:
        parts.append(f"{env['affinity_cores']} of {env.get('logical_cores', '?')} cores usable "
                     f"({env.get('physical_cores', '?')} physical)")
    if env.get("memory_gib") is not None:
        parts.append(f"{env['memory_gib']} GiB memory")
    if "int8_flags" in env:
        flags = ", ".join(env.get("int8_flags") or []) or "none"
        fast = "fast int8 (VNNI-class)" if env.get("fast_int8") else "no fast int8 (no VNNI-class instructions)"
        parts.append(f"int8 features: {flags}; {fast}")
    providers = [str(p).removesuffix("ExecutionProvider") for p in env.get("ort_available_providers") or []]
    if providers:
        parts.append(f"ONNX Runtime providers listed (a listed one may still fail to load): {', '.join(providers)}")
    libs = env.get("libraries") or {}
    key = [f"{name} {libs[name]}" for name in KEY_LIBRARIES if name in libs]
    if env.get("python"):
        key.insert(0, f"Python {env['python']}")
    if key:
        parts.append(", ".join(key))
    parts.append(f"commit {env['git_commit']}" if env.get("git_commit") else "commit unknown")
    line = f'<p class="env"><b>Environment:</b> {_esc(" · ".join(parts))}</p>'
    every = ", ".join(f"{k} {v}" for k, v in libs.items())
    if every or env.get("platform"):
        line += (f"<details><summary>All library versions and the platform</summary>"
                 f"<p>{_esc(every)}</p><p>{_esc(env.get('platform', ''))}</p></details>")
    return line


def parameters_line(summary: Mapping[str, Any]) -> str:
    """The run's parameters and outcome in one paragraph (HTML)."""
    runs = summary.get("notebooks", [])
    parts = [f"profile {summary.get('profile', '?')}"]
    if summary.get("models"):
        parts.append("models " + ", ".join(Path(str(m)).name for m in summary["models"]))
    if summary.get("data"):
        parts.append(f"data {summary['data']}")
    parts += [f"-p {name} {value}" for name, value in summary.get("overrides") or []]
    if summary.get("hide_code"):
        parts.append("code hidden in the notebook pages")
    counts = {s: sum(nb.get("status") == s for nb in runs) for s in ("ok", "failed", "skipped")}
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(summary["started"])) if summary.get("started") else ""
    outcome = (f"{len(runs)} notebook runs: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped "
               f"(nothing in them applies to the model); {summary.get('seconds', 0):.0f} s in all"
               + (f", started {when}" if when else ""))
    return (f'<p class="run"><b>Run:</b> {_esc("; ".join(parts))}.<br>{_esc(outcome)}.</p>')


def _artifact_name(record: Mapping[str, Any], notebook: str) -> str:
    """The artifact's path below its notebook's artifacts folder (``picked/model.onnx``), else its file name."""
    path = PurePosixPath(str(record["file"]))
    parts = path.parts
    if "artifacts" in parts:
        at = parts.index("artifacts")
        rest = parts[at + 2:] if len(parts) > at + 2 and parts[at + 1] == notebook else parts[at + 1:]
        if rest:
            return "/".join(rest)
    return path.name


def _artifacts(out_dir: Path, nb: Mapping[str, Any]) -> str:
    records = [r for r in nb.get("artifacts") or [] if isinstance(r, Mapping) and r.get("file")]
    if not records:
        return ""
    links = [f"{_link(out_dir, r['file'], _artifact_name(r, nb['notebook']))} ({_esc(_size(r.get('size_bytes')))})"
             for r in records[:MAX_ARTIFACT_LINKS]]
    more = len(records) - MAX_ARTIFACT_LINKS
    if more > 0:
        parts = PurePosixPath(str(records[0]["file"])).parts  # [<model>/]artifacts/<notebook>/...
        head = parts[:parts.index("artifacts") + 2] if "artifacts" in parts[:-1] else parts[:-1]
        listing = PurePosixPath(*head) / "ARTIFACTS.json"
        links.append(f"and {more} more ({_link(out_dir, str(listing), 'the full list')})")
    return f'<p class="artifacts"><b>Artifacts:</b> {", ".join(links)}</p>'


def _files(out_dir: Path, nb: Mapping[str, Any]) -> str:
    """Links to the notebook's machine-readable siblings that exist."""
    html_path = nb.get("html") or f"{nb['notebook']}.html"
    stem = str(PurePosixPath(str(html_path)).with_suffix(""))
    links = [_link(out_dir, rel, text) for rel, text in ((nb.get("executed"), "executed notebook (.ipynb)"),
                                                          (f"{stem}.params.json", "parameters"),
                                                          (f"{stem}.results.json", "results"))
             if _local(out_dir, rel)]
    return f'<p class="files">{" · ".join(links)}</p>' if links else ""


def card(out_dir: Path, nb: Mapping[str, Any]) -> str:
    """One notebook run as an HTML ``<section>``."""
    status = str(nb.get("status", "pending"))
    css = status if status in STATUSES else "other"
    name = str(nb.get("title") or nb["notebook"])
    title = _link(out_dir, nb.get("html"), name)
    meta = [f'<span class="status">{_esc(status)}</span>', f"{float(nb.get('seconds') or 0):.1f} s",
            f"<code>{_esc(nb['notebook'])}</code>"]
    if nb.get("model"):
        meta.append(f"model {_esc(Path(str(nb['model'])).name)}")
    body = [f"<h3>{title}</h3>", f'<p class="meta">{" · ".join(meta)}</p>']
    if nb.get("error"):
        where = f"cell {_esc(nb['failed_cell'])}: " if nb.get("failed_cell") is not None else ""
        word = "Skipped" if status == "skipped" else "Error"
        body.append(f'<p class="error"><b>{word}:</b> {where}{_esc(nb["error"])}</p>')
    findings = nb.get("findings") or []
    if findings:
        body.append('<ul class="findings">' + "".join(f"<li>{_esc(f)}</li>" for f in findings) + "</ul>")
    skips = {k: v for k, v in (nb.get("skipped_sections") or {}).items() if k != "whole notebook"}
    if skips:
        body.append('<ul class="skips">' + "".join(f"<li>{_esc(section)}: skipped: {_esc(reason)}</li>"
                                                    for section, reason in skips.items()) + "</ul>")
    figures = nb.get("headline") or {}
    if figures:
        body.append('<p class="figures"><b>Figures:</b> ' + "; ".join(
            f"{_esc(label(k))} <b>{_esc(format_figure(v))}</b>" for k, v in figures.items()) + "</p>")
    body += [_artifacts(out_dir, nb), _files(out_dir, nb)]
    thumb = ""
    if _local(out_dir, nb.get("thumbnail")):
        img = f'<img src="{_href(nb["thumbnail"])}" alt="{_esc("Key plot of " + name)}">'
        target = _local(out_dir, nb.get("html"))
        linked = f'<a href="{_href(target)}">{img}</a>' if target else img
        thumb = f'<div class="thumb">{linked}</div>'
    return f'<section class="nb {css}">{thumb}<div class="body">{"".join(b for b in body if b)}</div></section>'


def write_index(out_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``index.html`` from a run summary (as saved in ``run.json``)."""
    out_dir = Path(out_dir)
    runs = summary.get("notebooks", [])
    failed = sum(nb.get("status") == "failed" for nb in runs)
    comparisons = [f'<a href="{_href(p.name)}">{_esc(p.stem)}</a>' for p in sorted(out_dir.glob("compare*.html"))]
    compare = f'<p class="run"><b>Comparisons:</b> {", ".join(comparisons)}</p>' if comparisons else ""
    models = list(summary.get("models") or [])
    if models:
        groups = [(Path(str(m)).name, [nb for nb in runs if nb.get("model") == m]) for m in models]
        groups += [("other", [nb for nb in runs if nb.get("model") not in models])]
        cards = "".join(f"<h2>{_esc(name)}</h2>" + "".join(card(out_dir, nb) for nb in group)
                        for name, group in groups if group)
    else:
        cards = "".join(card(out_dir, nb) for nb in runs)
    files = " · ".join(_link(out_dir, name, name) for name in ("run.json", "environment.json")
                       if _local(out_dir, name))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kit report: {_esc(summary.get('profile', '?'))} profile, {len(runs)} notebooks, {failed} failed</title>
<style>{CSS}</style></head><body>
<h1>kit performance reports</h1>
{environment_line(summary.get("environment") or {})}
{parameters_line(summary)}
{compare}
{cards}
<p class="files">Machine-readable: {files or "none"}; each notebook's parameters and results are beside its page.</p>
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def load_summary(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "run.json").read_text())

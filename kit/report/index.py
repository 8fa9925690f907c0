"""The report index: one HTML page linking every notebook report with status and headline."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote


def _esc(value: Any) -> str:
    """Text or attribute value, escaped (quotes too): names in a run can hold anything."""
    return html.escape(str(value), quote=True)


def _href(path: Any) -> str:
    """A link to a file beside the page: percent-encoded (so no ``javascript:`` scheme survives), then escaped."""
    return _esc(quote(str(path)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def write_index(out_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``index.html`` from a run summary (as saved in ``run.json``)."""
    env = summary.get("environment", {})
    by_model = bool(summary.get("models"))
    rows = []
    for nb in summary["notebooks"]:
        link = f'<a href="{_href(nb["html"])}">{_esc(nb["notebook"])}</a>' \
            if nb.get("html") else _esc(nb["notebook"])
        status = _esc(nb["status"])
        detail = _esc(nb.get("error") or "")
        if nb.get("failed_cell") is not None:
            detail = f"cell {_esc(nb['failed_cell'])}: {detail}"
        skipped = "".join(f"<br>{_esc(section)}: skipped: {_esc(reason)}"
                          for section, reason in (nb.get("skipped_sections") or {}).items()
                          if section != "whole notebook")
        figures = "<br>".join(f"{_esc(k)}: <b>{_fmt(v)}</b>" for k, v in nb.get("headline", {}).items())
        model = f"<td>{_esc(str(nb.get('model') or ''))}</td>" if by_model else ""
        rows.append(f'<tr class="{status}">{model}<td>{link}</td><td class="status">{status}</td>'
                    f'<td>{nb["seconds"]:.1f}</td><td>{figures}</td><td>{detail}{skipped}</td></tr>')
    failed = sum(nb["status"] == "failed" for nb in summary["notebooks"])
    skipped_count = sum(nb["status"] == "skipped" for nb in summary["notebooks"])
    comparison = ""
    for extra in sorted(out_dir.glob("compare*.html")):
        comparison += f'<p><a href="{_href(extra.name)}">Comparison: {_esc(extra.stem)}</a></p>'
    env_rows = "".join(f"<tr><td>{_esc(str(k))}</td><td>{_fmt(v)}</td></tr>"
                       for k, v in env.items() if k != "libraries")
    libs = ", ".join(f"{k} {v}" for k, v in env.get("libraries", {}).items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kit reports ({_esc(summary['profile'])})</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }}
tr.ok .status {{ color: #070; }} tr.failed .status {{ color: #b00; font-weight: bold; }}
tr.skipped .status {{ color: #666; }}
</style></head><body>
<h1>kit performance reports</h1>
<p>Profile <b>{_esc(summary['profile'])}</b>; {len(summary['notebooks'])} notebook runs,
{failed} failed, {skipped_count} skipped (nothing in them applies to the model); {summary['seconds']:.0f} s
in all. Parameters, results and environment of each notebook
are in the JSON files beside this page (<code>run.json</code>, <code>*.params.json</code>,
<code>*.results.json</code>).</p>
{comparison}
<table><tr>{'<th>model</th>' if by_model else ''}<th>notebook</th><th>status</th><th>seconds</th><th>headline</th>
<th>error / skipped</th></tr>
{''.join(rows)}</table>
<h2>Environment</h2><table>{env_rows}</table><p>{_esc(libs)}</p>
</body></html>
"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def load_summary(out_dir: Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / "run.json").read_text())

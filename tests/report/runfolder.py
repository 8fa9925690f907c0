"""A report folder as ``kit report`` leaves it, made in a second by the runner's own writers, no kernel.

One executed notebook (title, printed text, a wide matplotlib plot) goes through
``collect_outputs`` (results JSON, HTML export, thumbnail), its artifacts through
``save_artifacts``, a failed run sits beside it, and ``write_index`` writes the page. The
findings, names and artifact file carry what tends to break a page: markup, a word far wider
than the screen.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict
from pathlib import Path

import nbformat

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}
LONG_WORD = "x" * 400
FINDINGS = ["On 64 labelled samples every engine scores 97.5 %: the engines agree on every prediction.",
            "onnxruntime is fastest at batch 1 with p50 1.23 ms <script>alert(1)</script>.",
            f"A word no line can hold: {LONG_WORD}."]
HEADLINE = {"p50_ms": {"value": 12.3, "low": 11.9, "high": 12.8, "n": 5, "unit": "ms", "better": "lower"},
            "fastest_engine": "onnxruntime", "batch_gain": 1.84}


def plot_png(width_in: float = 12.0, height_in: float = 4.0, dpi: int = 100) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=dpi)
    ax.plot([1, 2, 3], [3, 1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def executed_notebook(path: Path, pngs: list[tuple[bytes, list[str]]]) -> Path:
    """An executed-looking notebook: a title, code with printed text, one output per ``(png, tags)``."""
    nb = nbformat.v4.new_notebook(metadata=KERNEL)
    nb.cells.append(nbformat.v4.new_markdown_cell("# Engines & <friends>\n\nWhat this notebook measures."))
    code = nbformat.v4.new_code_cell("print('visible only with code')", execution_count=1)
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text=FINDINGS[0] + "\n")]
    nb.cells.append(code)
    for i, (png, tags) in enumerate(pngs, start=2):
        cell = nbformat.v4.new_code_cell("plt.show()", execution_count=i)
        cell.metadata["tags"] = tags
        cell.outputs = [nbformat.v4.new_output("display_data",
                                               data={"image/png": base64.b64encode(png).decode()})]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def make_report(folder: Path, hide_code: bool = False) -> dict:
    """Write a two-notebook report into ``folder`` (one ok with everything, one failed); its summary."""
    from kit.export import save_artifacts
    from kit.profile.sysinfo import environment
    from kit.report.index import write_index
    from kit.report.runner import NotebookRun, collect_outputs

    folder.mkdir(parents=True, exist_ok=True)
    stem = "00_demo"
    executed_notebook(folder / f"{stem}.ipynb", [(plot_png(4, 3), []), (plot_png(), [])])
    made = folder.parent / f"{folder.name}-made"
    made.mkdir(exist_ok=True)
    (made / "best_config.json").write_text(json.dumps({"intra_op_num_threads": 2}))
    (made / f"{LONG_WORD[:120]}.txt").write_text("a long name")
    records = save_artifacts(stem, files={"best_config.json": made / "best_config.json",
                                          f"{LONG_WORD[:120]}.txt": made / f"{LONG_WORD[:120]}.txt"},
                             run_dir=folder)
    (folder / f"{stem}.params.json").write_text(json.dumps({"batch_sizes": [1, 8]}))
    (folder / f"{stem}.results.json").write_text(json.dumps({
        "headline": HEADLINE, "tables": {}, "findings": FINDINGS, "artifacts": records,
        "skipped_sections": {"SavedModel": "the model has no SavedModel form"}}))
    ok = collect_outputs(NotebookRun(notebook=stem, status="ok", seconds=3.2), folder, stem, hide_code)
    failed = NotebookRun(notebook="01_broken", status="failed", seconds=0.4, failed_cell=3,
                         error="ValueError: deliberate <failure>")
    (folder / "compare_older.html").write_text("<!doctype html><title>comparison</title><p>same</p>")
    summary = {"profile": "quick", "started": 1_700_000_000.0, "seconds": 3.6, "environment": environment(),
               "models": [], "data": None, "overrides": [["batch_sizes", "[1, 8]"]], "hide_code": hide_code,
               "notebooks": [asdict(ok), asdict(failed)]}
    (folder / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    write_index(folder, summary)
    return summary

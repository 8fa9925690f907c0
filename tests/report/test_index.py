"""The report index reads as sentences, links only what is in the run folder, and travels with it."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from runfolder import FINDINGS, executed_notebook, make_report, plot_png

from kit.report.executed import THUMB_WIDTH, key_plot
from kit.report.index import format_figure, write_index


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "a" and "href" in attrs:
            self.targets.append(attrs["href"])
        if tag == "img":
            self.targets.append(attrs["src"])


def _links(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text())
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    make_report(folder)
    return folder


def test_findings_are_sentences_and_figures_have_words_for_labels(report):
    page = (report / "index.html").read_text()
    assert "On 64 labelled samples every engine scores 97.5 %" in page
    assert "p50 ms <b>12.3 ms (11.9–12.8, n=5; lower is better)</b>" in page
    assert "fastest engine <b>onnxruntime</b>" in page
    assert "p50_ms" not in page and "fastest_engine" not in page  # no raw keys
    assert "Engines &amp; &lt;friends&gt;" in page  # the notebook's own title, escaped
    assert "SavedModel: skipped: the model has no SavedModel form" in page
    assert "cell 3: ValueError: deliberate &lt;failure&gt;" in page
    assert "profile quick; -p batch_sizes [1, 8]" in page and 'href="compare_older.html"' in page
    env = json.loads((report / "run.json").read_text())["environment"]
    assert env["cpu_model"] in page and "int8 features:" in page and f"commit {env['git_commit']}" in page


def test_the_page_has_no_script_and_markup_in_findings_is_text(report):
    page = (report / "index.html").read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<iframe" not in page and "data:" not in page  # no notebook or image embedded
    assert len(page) < 30_000


def test_artifacts_are_linked_with_their_sizes(report):
    page = (report / "index.html").read_text()
    assert '<a href="artifacts/00_demo/best_config.json">best_config.json</a> (' in page
    assert "B)" in page


def test_copied_folder_keeps_every_link_and_image(report, tmp_path):
    copy = tmp_path / "elsewhere" / "shared report"
    shutil.copytree(report, copy)
    shutil.rmtree(report.parent / f"{report.name}-made", ignore_errors=True)  # nothing outside is needed
    links = _links(copy / "index.html")
    assert "img" in links.tags and len(links.targets) >= 8
    for target in links.targets:
        parts = urlsplit(target)
        assert not parts.scheme and not parts.netloc and not target.startswith("/"), target
        assert (copy / unquote(parts.path)).is_file(), target


def test_thumbnail_is_small_and_links_to_the_notebook_page(report):
    from PIL import Image

    summary = json.loads((report / "run.json").read_text())
    ok = summary["notebooks"][0]
    assert ok["thumbnail"] == "thumbs/00_demo.png" and ok["findings"] == FINDINGS
    with Image.open(report / ok["thumbnail"]) as image:
        assert image.width == THUMB_WIDTH and image.height == 107  # the 1200x400 plot, scaled
    assert '<a href="00_demo.html"><img src="thumbs/00_demo.png"' in (report / "index.html").read_text()


def test_key_plot_is_the_tagged_one_or_else_the_largest(tmp_path):
    small, large = plot_png(3, 2), plot_png(10, 4)
    nb = nbformat.read(executed_notebook(tmp_path / "a.ipynb", [(small, []), (large, []), (small, [])]), 4)
    assert key_plot(nb) == large
    nb = nbformat.read(executed_notebook(tmp_path / "b.ipynb", [(large, []), (small, ["key-plot"])]), 4)
    assert key_plot(nb) == small
    nb = nbformat.read(executed_notebook(tmp_path / "c.ipynb", []), 4)
    assert key_plot(nb) is None


def test_hide_code_leaves_code_and_prompts_out_of_the_notebook_page(tmp_path):
    make_report(tmp_path / "run", hide_code=True)
    page = (tmp_path / "run" / "00_demo.html").read_text()
    assert "visible only with code" not in page and FINDINGS[0] in page
    assert "code hidden in the notebook pages" in (tmp_path / "run" / "index.html").read_text()


def test_links_that_leave_the_folder_or_name_nothing_are_not_made(tmp_path):
    (tmp_path / "secret.txt").write_text("outside")
    folder = tmp_path / "run"
    folder.mkdir()
    artifacts = [{"file": "../secret.txt", "size_bytes": 7}, {"file": "/etc/passwd", "size_bytes": 1},
                 {"file": "javascript:alert(1)", "size_bytes": 1}, {"file": "missing.bin", "size_bytes": 1}]
    summary = {"profile": "quick", "seconds": 1.0, "environment": {},
               "notebooks": [{"notebook": "02_x", "status": "ok", "seconds": 1.0, "html": "../secret.txt",
                              "thumbnail": "/etc/hosts", "artifacts": artifacts, "headline": {}}]}
    page = write_index(folder, summary).read_text()
    assert "<a href" not in page and "<img" not in page
    assert "secret.txt" in page and "missing.bin" in page  # named, not linked


def test_several_models_get_a_section_each(tmp_path):
    runs = [{"notebook": "00_engines", "status": "ok", "seconds": 1.0, "model": m, "findings": [f"{m} is fast."]}
            for m in ("/data/a.onnx", "b")]
    page = write_index(tmp_path, {"profile": "quick", "seconds": 2.0, "environment": {},
                                  "models": ["/data/a.onnx", "b"], "notebooks": runs}).read_text()
    assert page.index("<h2>a.onnx</h2>") < page.index("/data/a.onnx is fast.") < page.index("<h2>b</h2>")


@pytest.mark.parametrize("value, text", [
    ({"value": 12.3, "low": 11.9, "high": 12.8, "n": 5, "unit": "ms", "better": "lower"},
     "12.3 ms (11.9–12.8, n=5; lower is better)"),
    ({"value": 0.123456, "spread": 0.01}, "0.1235 (±0.01)"),
    ({"value": 500, "unit": "samples/s"}, "500 samples/s"),
    ({"value": 2.0, "better": "higher"}, "2 (higher is better)"),
    ({"value": 0.52, "low": 0.52, "high": 0.52, "n": 0, "unit": "x", "better": "higher"}, "0.52 x (higher is better)"),
    ({"value": 3.0, "better": "?"}, "3"),
    ({"value": None, "low": None, "high": None, "n": 3, "unit": "ms", "better": "lower"}, "n/a"),
    ({"engine": "ort", "p50": 1.5}, "engine: ort, p50: 1.5"),
    (None, "n/a"), ([1, 8], "1, 8"), ("onnxruntime", "onnxruntime"), (True, "True"),
])
def test_figures_read_with_their_units_and_ranges(value, text):
    assert format_figure(value) == text


def test_every_shipped_notebook_marks_one_key_plot():
    from kit.report.executed import KEY_PLOT_TAG
    from kit.report.profiles import list_notebooks

    for path in list_notebooks():
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if KEY_PLOT_TAG in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and tagged[0].cell_type == "code", path.name


MODEL_NOTEBOOK = """import pathlib
import matplotlib.pyplot as plt
import kit
from kit.export import save_artifacts
from kit.report.publish import update_results
fig, ax = plt.subplots(figsize=(8, 3))
ax.plot([1, 3, 2])
plt.show()
kit.finding(f"The model {pathlib.Path(model).name} answered in 1.5 ms (p50).")
note = pathlib.Path("note.txt")
note.write_text("chosen")
records = save_artifacts("30_model", files={"note.txt": note})
update_results(lambda results: results.__setitem__("artifacts", records))
"""


@pytest.mark.slow
@pytest.mark.notebook
def test_a_model_sub_report_links_its_findings_thumbnail_and_artifacts_from_the_top(add_onnx, tmp_path):
    """The kernel path end to end: kit.finding, a plot and save_artifacts in a notebook run per model."""
    from kit.report.runner import run_reports

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}, "language_info": {"name": "python"}})
    params = nbformat.v4.new_code_cell("model: str = ''  # the model")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(MODEL_NOTEBOOK)]
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "30_model.ipynb")
    [run] = run_reports("quick", [str(tmp_path / "nbs" / "30_model.ipynb")], out=tmp_path / "out", models=[add_onnx])
    assert run.status == "ok", run.error
    assert run.findings == ["The model add.onnx answered in 1.5 ms (p50)."]
    assert (run.html, run.thumbnail) == ("add/30_model.html", "add/thumbs/30_model.png")
    assert [a["file"] for a in run.artifacts] == ["add/artifacts/30_model/note.txt"]
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<h2>add.onnx</h2>" in page and "The model add.onnx answered in 1.5 ms (p50)." in page
    links = _links(tmp_path / "out" / "index.html")
    assert "add/artifacts/30_model/note.txt" in links.targets and "add/thumbs/30_model.png" in links.targets
    assert all((tmp_path / "out" / unquote(t)).is_file() for t in links.targets)

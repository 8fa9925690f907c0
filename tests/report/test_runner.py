"""The report pipeline on two tiny notebooks: one that publishes, one that fails."""

from __future__ import annotations

import json

import nbformat
import pytest

from kit.cli import main
from kit.errors import ConfigError
from kit.report.runner import resolve_notebooks, run_notebook, run_reports

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def _notebook(path, body: str, param: str = "size: int = 3  # how many"):
    nb = nbformat.v4.new_notebook(metadata=KERNEL)
    params = nbformat.v4.new_code_cell(param)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    root = tmp_path_factory.mktemp("nbs")
    good = _notebook(root / "10_good.ipynb", "import kit\nkit.publish(headline={'size_squared': size * size})\n"
                                             "print('from kit', kit.report.is_headless())")
    bad = _notebook(root / "11_bad.ipynb", "raise ValueError('deliberate failure')")
    return good, bad


@pytest.mark.slow
def test_failing_notebook_is_recorded_and_others_still_run(notebooks, tmp_path):
    good, bad = notebooks
    runs = run_reports("quick", [str(bad), str(good)], out=tmp_path)
    assert [r.status for r in runs] == ["failed", "ok"]
    assert "deliberate failure" in runs[0].error and runs[0].failed_cell is not None
    assert runs[1].headline == {"size_squared": 9}
    index = (tmp_path / "index.html").read_text()
    assert "10_good.html" in index and "deliberate failure" in index and "size squared <b>9</b>" in index
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["profile"] == "quick" and summary["environment"]["cpu_model"]
    assert (tmp_path / "environment.json").exists() and (tmp_path / "10_good.params.json").exists()
    html = (tmp_path / "10_good.html").read_text()
    assert "from kit True" in html  # headless under the runner


@pytest.mark.slow
def test_parameters_are_injected_and_code_can_be_hidden(notebooks, tmp_path):
    good, _ = notebooks
    run = run_notebook(good, tmp_path, "quick", hide_code=True, extra_parameters={"size": 5})
    assert run.status == "ok" and run.headline == {"size_squared": 25}
    assert "kit.publish" not in (tmp_path / "10_good.html").read_text()


def test_unknown_notebook_and_profile_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="available"):
        resolve_notebooks(["99_nothing"])
    with pytest.raises(ConfigError, match="profile"):
        run_reports("fastest", [], out=tmp_path)


def test_cli_reports_kit_errors_in_one_line(capsys):
    assert main(["report", "--notebooks", "99_nothing", "--out", "/tmp/kit-cli-test"]) == 2
    assert capsys.readouterr().err.startswith("kit: error: notebook '99_nothing'")


def test_cli_env_prints_the_environment(capsys):
    assert main(["env"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"cpu_model", "int8_flags", "libraries", "git_commit"} <= set(record)


def test_wrong_parameter_type_or_name_fails_before_a_kernel_starts(notebooks, tmp_path):
    good, _ = notebooks
    run = run_notebook(good, tmp_path, "quick", extra_parameters={"size": "three"})
    assert run.status == "failed" and "parameter 'size' must be a int (how many), got 'three'" in run.error
    run = run_notebook(good, tmp_path, "quick", extra_parameters={"sizes": 3})
    assert run.status == "failed" and "has no parameter 'sizes'" in run.error
    assert not (tmp_path / "10_good.ipynb").exists()


def test_every_profile_matches_its_notebook_parameters():
    from kit.report.profiles import PROFILES, check_parameters, list_notebooks, profile_parameters

    for notebook in list_notebooks():
        for profile in PROFILES:
            check_parameters(notebook, profile_parameters(notebook, profile))


def _typed_notebook(tmp_path):
    cell = ("size: int = 3  # how many\nratio: float = 0.5  # a share\nname: str = 'x'  # a label\n"
            "flag: bool = False  # on or off\nsizes: list = [1]  # batch sizes\nshapes: dict = {}  # per input")
    return _notebook(tmp_path / "20_typed.ipynb", "pass", param=cell)


def test_cli_parameters_are_typed_by_the_notebook(tmp_path):
    from kit.report.profiles import typed_parameters

    nb = _typed_notebook(tmp_path)
    pairs = [("size", "8"), ("ratio", "2"), ("name", "8"), ("flag", "yes"), ("sizes", "[1, 8]"),
             ("shapes", '{"x": [1, 3]}')]
    assert typed_parameters([nb], pairs) == {"20_typed": {"size": 8, "ratio": 2.0, "name": "8", "flag": True,
                                                          "sizes": [1, 8], "shapes": {"x": [1, 3]}}}


@pytest.mark.parametrize("name, value, words", [
    ("size", "eight", "is a int"), ("ratio", "1,5", "is a float"), ("flag", "maybe", "is a bool"),
    ("sizes", "1, 8", "as JSON"), ("shapes", "[1]", "is a dict"), ("colour", "red", "no chosen notebook"),
])
def test_cli_parameters_refuse_unknown_names_and_wrong_types(tmp_path, name, value, words):
    from kit.report.profiles import typed_parameters

    with pytest.raises(ConfigError, match=words):
        typed_parameters([_typed_notebook(tmp_path)], [(name, value)])


def test_report_refuses_bad_input_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--notebooks", "00_engines", "--out", str(out), "-p", "rounds", "three"]) == 2
    assert "rounds" in capsys.readouterr().err and not out.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["report", "--notebooks", "00_engines", "--out", str(blocker), "--profile", "quick",
                 "-p", "rounds", "1", "--model", "no/such/model.onnx"]) == 2
    assert main(["report", "--notebooks", "00_engines", "--out", str(blocker / "under")]) == 2
    assert blocker.read_text() == ""


@pytest.mark.slow
def test_a_notebook_that_does_not_apply_is_skipped_not_failed(tmp_path):
    nb = _notebook(tmp_path / "21_skip.ipynb", "import kit.report.skips as s\n"
                   "s.skip_section('TFLite', 'the model is ONNX only')\ns.skip_notebook('nothing here applies')")
    runs = run_reports("quick", [str(nb)], out=tmp_path / "out")
    assert runs[0].status == "skipped" and runs[0].error == "nothing here applies"
    assert runs[0].skipped_sections["TFLite"] == "the model is ONNX only"
    index = (tmp_path / "out" / "index.html").read_text()
    assert "skipped" in index and "the model is ONNX only" in index


def test_report_refuses_a_model_its_runtime_cannot_load_naming_the_custom_op(tmp_path, capsys):
    from pretrained import pretrained_path

    model = pretrained_path("mp-face-landmark-attention")  # MediaPipe's own transform ops, not in LiteRT
    out = tmp_path / "report"
    assert main(["report", "--notebooks", "00_engines", "--out", str(out), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert "custom op 'Landmarks2TransformMatrix'" in err and len(err.splitlines()) == 1
    assert not out.exists()

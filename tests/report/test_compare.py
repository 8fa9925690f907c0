"""`kit compare`: exit codes on identical runs and on a synthetic regression; noise and the index link."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.cli import main
from kit.errors import ConfigError
from kit.profile.figures import Figure
from kit.report.compare import compare_runs, direction, load_run, table
from kit.report.index import write_index


def make_run(folder: Path, started: float, headline: dict, status: str = "ok") -> Path:
    """A report folder as `kit report` leaves it: run.json, index.html and a results file."""
    folder.mkdir(parents=True)
    summary = {"profile": "quick", "started": started, "seconds": 3.0,
               "environment": {"cpu_model": "test", "git_commit": f"c{int(started)}", "libraries": {"numpy": "2"}},
               "notebooks": [{"notebook": "01_demo", "status": status, "seconds": 1.0, "error": None,
                              "failed_cell": None, "parameters": {}, "headline": {}, "html": "01_demo.html"}]}
    (folder / "run.json").write_text(json.dumps(summary))
    (folder / "01_demo.results.json").write_text(json.dumps({"headline": headline, "tables": {}}))
    write_index(folder, summary)
    return folder


BASE = {"p95_ms": 10.0, "p95_ms_spread": 0.2, "samples_per_s": 500.0, "accuracy": 0.97, "best_threads": 2}


def test_identical_runs_pass_the_gate(tmp_path, capsys):
    a = make_run(tmp_path / "A", 100.0, BASE)
    b = make_run(tmp_path / "B", 200.0, BASE)
    assert main(["compare", str(a), str(b), "--threshold", "5"]) == 0
    out = capsys.readouterr().out
    assert "01_demo/p95_ms" in out and "within noise" in out
    page = (b / "compare_A.html").read_text()
    assert "c100" in page and "c200" in page  # both runs' commits, so either can be rerun
    assert 'href="compare_A.html"' in (b / "index.html").read_text()  # the index links the comparison


def test_a_regression_beyond_threshold_and_noise_fails_the_gate(tmp_path, capsys):
    a = make_run(tmp_path / "A", 100.0, BASE)
    bare = {k: v for k, v in BASE.items() if k != "p95_ms_spread"}  # published without its spread: the floor judges
    b = make_run(tmp_path / "B", 200.0, {**bare, "p95_ms": 13.0, "samples_per_s": 510.0})
    assert main(["compare", str(b), str(a), "--threshold", "10"]) == 1  # argument order does not matter
    assert "01_demo/p95_ms" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--threshold", "50"]) == 0  # +30 % is within a 50 % gate
    assert main(["compare", str(a), str(b)]) == 0  # no threshold: report only
    frame = compare_runs(a, b, threshold_pct=10).frame.set_index("metric")
    assert frame.loc["01_demo/p95_ms", "change_pct"] == pytest.approx(30.0)
    assert frame.loc["01_demo/p95_ms", "verdict"] == "worse"
    assert frame.loc["01_demo/samples_per_s", "verdict"] == "within noise"  # +2 % under the 5 % floor
    assert frame.loc["01_demo/best_threads", "better"] == "?"


def test_spread_decides_what_is_noise(tmp_path):
    a = make_run(tmp_path / "A", 1.0, {"p95_ms": 10.0, "p95_ms_spread": 2.0})
    b = make_run(tmp_path / "B", 2.0, {"p95_ms": {"value": 13.0, "spread": 2.0}})
    comparison = compare_runs(a, b, threshold_pct=10, noise_pct=0)
    assert comparison.regressions == []  # +3 ms is within the 4 ms of the two spreads
    figure = load_run(b).metrics["01_demo/p95_ms"]  # the old {"value", "spread"} reads as value ± spread
    assert (figure.value, figure.low, figure.high) == (13.0, 11.0, 15.0) and figure.has_spread
    assert load_run(a).metrics["01_demo/p95_ms"].low == 8.0  # and so does a sibling <name>_spread


def test_a_notebook_that_broke_is_a_regression(tmp_path):
    a = make_run(tmp_path / "A", 1.0, BASE)
    b = make_run(tmp_path / "B", 2.0, BASE, status="failed")
    assert main(["compare", str(a), str(b), "--threshold", "10"]) == 1


def test_bad_inputs_are_config_errors(tmp_path, capsys):
    a = make_run(tmp_path / "A", 1.0, BASE)
    with pytest.raises(ConfigError, match="no run.json"):
        load_run(tmp_path / "missing")
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    assert "no run.json" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        compare_runs(a, a, threshold_pct=-1)


def test_direction_from_names():
    assert direction("x/p99_ms") == "lower" and direction("x/accuracy_drop") == "lower"
    assert direction("x/samples_per_s") == "higher" and direction("x/speedup") == "higher"
    assert direction("x/best_batch_size") == "?" and direction("x/model_size_mb") == "lower"


def test_run_names_cannot_inject_markup(tmp_path):
    """Issue 16 #3: a compared run's name went into an href unescaped."""
    evil = 'old"><img src=x onerror=alert(3)>'
    a = make_run(tmp_path / evil, 100.0, BASE)
    b = make_run(tmp_path / "new", 200.0, BASE)
    assert main(["compare", str(a), str(b)]) == 0
    for page in (b / "index.html", next(b.glob("compare_*.html"))):
        text = page.read_text()
        assert "<img" not in text and 'onerror=alert(3)>"' not in text
    summary = json.loads((b / "run.json").read_text())
    summary["notebooks"][0].update(status='ok"><script>x()</script>', html="javascript:alert(1)", failed_cell="<b>")
    write_index(b, summary)
    text = (b / "index.html").read_text()
    assert "<script>" not in text and 'href="javascript:' not in text and "<b>:" not in text


@pytest.mark.parametrize("newer", [{**BASE, "p95_ms": float("nan")}, {**BASE, "p95_ms": "12 ms"},
                                   {k: v for k, v in BASE.items() if k not in ("p95_ms", "p95_ms_spread")}])
def test_a_figure_that_cannot_be_compared_fails_the_gate(tmp_path, capsys, newer):
    """Issue 16 #4: NaN, a string or a vanished figure passed the gate with exit 0."""
    a = make_run(tmp_path / "A", 1.0, BASE)
    b = make_run(tmp_path / "B", 2.0, newer)
    assert main(["compare", str(a), str(b), "--threshold", "10"]) == 1
    assert "01_demo/p95_ms" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--threshold", "10", "--allow-missing"]) == 0
    assert compare_runs(a, b).frame.set_index("metric").loc["01_demo/p95_ms", "verdict"] == "lost"


@pytest.mark.parametrize("summary, message", [
    ([], "JSON object"), (b"\xff\xfe not utf-8", "UTF-8"),
    ({"started": 1.0, "notebooks": [{"status": "ok"}]}, "'notebook' name"),
    ({"started": "yesterday", "notebooks": []}, "'started'"),
    ({"started": 1.0, "notebooks": {"01_demo": {}}}, "'notebooks'"),
])
def test_malformed_run_json_is_a_config_error_not_a_traceback(tmp_path, capsys, summary, message):
    """Issue 16 #11: each of these raised a raw TypeError/KeyError/UnicodeDecodeError from kit compare."""
    a = make_run(tmp_path / "A", 1.0, BASE)
    bad = tmp_path / "B"
    bad.mkdir()
    (bad / "run.json").write_bytes(summary if isinstance(summary, bytes) else json.dumps(summary).encode())
    with pytest.raises(ConfigError, match=message):
        load_run(bad)
    assert main(["compare", str(a), str(bad)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def _figure(rounds, unit="ms", better="lower"):
    return Figure.from_rounds(rounds, unit=unit, better=better).to_json()


def test_identical_distributions_with_spreads_are_within_noise(tmp_path, capsys):
    """Issue 17 #1: two runs of the same thing, each with its own spread over rounds, never gate."""
    a = make_run(tmp_path / "A", 1.0, {"latency": _figure([10.0, 11.5, 10.4, 12.0, 9.8]),
                                       "rate": _figure([480, 520, 505], unit="1/s", better="higher")})
    b = make_run(tmp_path / "B", 2.0, {"latency": _figure([11.9, 10.1, 10.9, 12.2, 10.0]),
                                       "rate": _figure([470, 510, 498], unit="1/s", better="higher")})
    comparison = compare_runs(a, b, threshold_pct=5, noise_pct=0)
    frame = comparison.frame.set_index("metric")
    assert comparison.regressions == []
    assert set(frame["verdict"]) == {"within noise"} and set(frame["noise"]) == {"spreads"}
    row = frame.loc["01_demo/latency"]
    assert (row["older_low"], row["older_high"], row["older_n"]) == (9.8, 12.0, 5)
    assert row["change_low_pct"] < 0 < row["change_high_pct"]  # the change's interval holds 0
    assert main(["compare", str(a), str(b), "--threshold", "5"]) == 0
    out = capsys.readouterr().out
    assert "10.4 [9.8–12] n=5" in out and "*" not in out  # each run's range and n; no floor was needed


def test_a_shift_beyond_both_spreads_and_the_threshold_is_a_regression(tmp_path, capsys):
    a = make_run(tmp_path / "A", 1.0, {"latency": _figure([10.0, 10.5, 10.2, 10.3])})
    b = make_run(tmp_path / "B", 2.0, {"latency": _figure([13.0, 13.6, 12.8, 13.1])})
    frame = compare_runs(a, b, threshold_pct=10).frame.set_index("metric")
    row = frame.loc["01_demo/latency"]
    assert row["verdict"] == "worse" and row["regression"] and row["beyond_noise"]
    assert row["apart_chance"] == pytest.approx(2 / 70)  # 4 rounds each: 1 time in 35 by chance
    assert row["change_low_pct"] == pytest.approx((12.8 - 10.5) / 10.25 * 100)  # the smallest change allowed
    assert main(["compare", str(a), str(b), "--threshold", "10"]) == 1
    assert "01_demo/latency" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--threshold", "40"]) == 0  # beyond noise, but under the threshold


def test_a_change_whose_interval_reaches_under_the_threshold_is_worse_but_does_not_gate(tmp_path, capsys):
    """Issue 17: two identical full runs flagged 02's load time at +33.7 % [+0.3, +52.7]: ranges apart,
    but the runs cannot tell that from a 1 % change. Only a change past the threshold at its near end gates."""
    a = make_run(tmp_path / "A", 1.0, {"load_ms": _figure([58.7, 60.1, 63.5, 77.13])})
    b = make_run(tmp_path / "B", 2.0, {"load_ms": _figure([77.34, 80.0, 85.2, 91.26])})
    row = compare_runs(a, b, threshold_pct=10).frame.set_index("metric").loc["01_demo/load_ms"]
    assert row["change_pct"] > 10 and row["verdict"] == "worse" and row["beyond_noise"]
    assert 0 < row["change_low_pct"] < 10 and not row["regression"]
    assert main(["compare", str(a), str(b), "--threshold", "10"]) == 0
    assert main(["compare", str(a), str(b), "--threshold", "0.1"]) == 1  # past a 0.1 % gate even at its near end
    c = make_run(tmp_path / "C", 1.0, {"rate": _figure([500, 505, 510, 520], better="higher")})
    d = make_run(tmp_path / "D", 2.0, {"rate": _figure([400, 410, 430, 440], better="higher")})  # -15 % at best
    row = compare_runs(c, d, threshold_pct=10).frame.set_index("metric").loc["01_demo/rate"]
    assert row["change_high_pct"] < -10 and row["regression"]  # higher is better: the near end is the high one


def test_a_shift_within_the_spreads_is_noise_even_past_the_threshold(tmp_path):
    a = make_run(tmp_path / "A", 1.0, {"latency": _figure([10.0, 14.0, 9.0])})
    b = make_run(tmp_path / "B", 2.0, {"latency": _figure([13.0, 11.0, 15.0])})  # median +30 %, ranges overlap
    comparison = compare_runs(a, b, threshold_pct=10, noise_pct=0)
    assert comparison.frame.set_index("metric").loc["01_demo/latency", "verdict"] == "within noise"
    assert comparison.regressions == []


def test_the_figure_says_which_way_is_better(tmp_path):
    """A figure's own ``better`` wins over the name heuristic (``*_ms`` would say lower)."""
    a = make_run(tmp_path / "A", 1.0, {"odd_ms": _figure([10.0, 10.1, 10.2, 10.3], better="higher")})
    b = make_run(tmp_path / "B", 2.0, {"odd_ms": _figure([5.0, 5.1, 5.2, 5.3], better="higher")})
    row = compare_runs(a, b, threshold_pct=10).frame.set_index("metric").loc["01_demo/odd_ms"]
    assert row["better"] == "higher" and row["regression"]
    c = make_run(tmp_path / "C", 1.0, {"latency_share": Figure.point(0.5, better="?").to_json()})
    d = make_run(tmp_path / "D", 2.0, {"latency_share": Figure.point(0.9, better="?").to_json()})
    row = compare_runs(c, d, threshold_pct=10).frame.set_index("metric").loc["01_demo/latency_share"]
    assert row["better"] == "?" and not row["regression"]  # a declared "?" is not overruled by "latency"


def test_a_bare_number_falls_back_to_the_floor_and_says_so(tmp_path, capsys):
    a = make_run(tmp_path / "A", 1.0, {"latency_ms": 10.0})
    b = make_run(tmp_path / "B", 2.0, {"latency_ms": _figure([10.3, 10.4, 10.35])})
    comparison = compare_runs(a, b, threshold_pct=1)
    row = comparison.frame.set_index("metric").loc["01_demo/latency_ms"]
    assert row["noise"] == "floor 5 %" and row["verdict"] == "within noise"  # +3.5 % under the 5 % floor
    assert table(comparison).iloc[0]["verdict"] == "within noise *"
    assert main(["compare", str(a), str(b)]) == 0
    assert "flat noise floor" in capsys.readouterr().out
    assert "flat noise floor" in (b / "compare_A.html").read_text()



def _two_models(folder: Path, started: float, fast: float, slow: float) -> Path:
    """A ``kit report --model a --model b`` folder: one sub-report per model, both with notebook 00."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for sub, p50 in (("a", fast), ("b", slow)):
        (folder / sub).mkdir()
        (folder / sub / "00_engines.results.json").write_text(json.dumps(
            {"headline": {"p50_ms": {"value": p50, "low": p50 * 0.99, "high": p50 * 1.01, "n": 4, "unit": "ms",
                                     "better": "lower"}}}))
        runs.append({"notebook": "00_engines", "status": "ok", "seconds": 1.0, "model": f"/m/{sub}.onnx",
                     "html": f"{sub}/00_engines.html"})
    (folder / "run.json").write_text(json.dumps({"profile": "quick", "started": started, "seconds": 2.0,
                                                 "notebooks": runs, "models": ["/m/a.onnx", "/m/b.onnx"]}))
    return folder


def test_each_model_of_a_multi_model_run_is_compared_on_its_own(tmp_path):
    """Both sub-reports were keyed '00_engines', so model b's regression hid behind model a's figure."""
    older = _two_models(tmp_path / "old", 1.0, 1.0, 2.0)
    newer = _two_models(tmp_path / "new", 2.0, 1.0, 3.0)
    assert set(load_run(older).metrics) == {"a/00_engines/p50_ms", "b/00_engines/p50_ms"}
    comparison = compare_runs(older, newer, threshold_pct=10)
    assert comparison.regressions == ["b/00_engines/p50_ms"]


def test_a_figure_only_the_newer_run_has_is_new_not_within_noise(tmp_path):
    older = make_run(tmp_path / "a", 1.0, {"p50_ms": 1.0})
    newer = make_run(tmp_path / "b", 2.0, {"p50_ms": 1.0, "p99_ms": 2.0})
    rows = compare_runs(older, newer, threshold_pct=10).frame.set_index("metric")
    assert rows.loc["01_demo/p99_ms", "verdict"] == "new" and not rows["regression"].any()


def test_apart_chance_is_how_often_identical_runs_ranges_do_not_overlap():
    """Issue 17: with 2 rounds each, two runs of one unchanged thing come apart 1 time in 3."""
    import itertools

    from kit.report.compare import apart_chance

    for n, m in [(2, 2), (3, 3), (2, 4), (4, 4)]:  # every ordering of the pooled rounds is equally likely
        orders = set(itertools.permutations("a" * n + "b" * m))
        apart = sum(max(i for i, x in enumerate(o) if x == "a") < min(i for i, x in enumerate(o) if x == "b")
                    or max(i for i, x in enumerate(o) if x == "b") < min(i for i, x in enumerate(o) if x == "a")
                    for o in orders)
        assert apart_chance(n, m) == pytest.approx(apart / len(orders))
    assert apart_chance(400, 300) < 1e-100  # a bootstrap interval's n is its samples: no chance to speak of


def test_ranges_apart_on_too_few_rounds_are_undecided_and_never_gate(tmp_path, capsys):
    a = make_run(tmp_path / "A", 1.0, {"latency": _figure([10.0, 10.5, 10.2])})
    b = make_run(tmp_path / "B", 2.0, {"latency": _figure([13.0, 13.6, 12.8])})  # apart, but 1 time in 10 by chance
    comparison = compare_runs(a, b, threshold_pct=10)
    row = comparison.frame.set_index("metric").loc["01_demo/latency"]
    assert row["verdict"] == "undecided" and not row["regression"] and not row["beyond_noise"]
    assert comparison.undecided == ["01_demo/latency"] and comparison.regressions == []
    assert compare_runs(a, b, threshold_pct=10, alpha=0.2).regressions == ["01_demo/latency"]  # a looser alpha
    assert main(["compare", str(a), str(b), "--threshold", "10"]) == 0
    out = capsys.readouterr().out
    assert "undecided: the ranges came apart, but on too few rounds" in out and "01_demo/latency" in out
    assert "undecided" in (b / "compare_A.html").read_text()
    with pytest.raises(ConfigError, match="alpha"):
        compare_runs(a, b, alpha=1.0)

"""publish records quietly; interactive returns the same value headless and live, and offers only useful controls."""

from __future__ import annotations

import importlib
import json

import pytest

from kit.report.publish import RESULTS_ENV, _decimals, finding, interactive, offered, publish

publish_module = importlib.import_module("kit.report.publish")  # kit.report.publish is also the function


def test_publish_returns_none_prints_one_line_and_merges(tmp_path, monkeypatch, capsys):
    target = tmp_path / "nb.results.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    assert publish(headline={"a": 1.0, "nan": float("nan")}, t=[{"x": 1}]) is None
    assert publish(headline={"b": 2}) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all(len(line) < 120 for line in out)
    data = json.loads(target.read_text())
    assert data["headline"] == {"a": 1.0, "nan": None, "b": 2} and data["tables"] == {"t": [{"x": 1}]}
    monkeypatch.delenv(RESULTS_ENV)
    assert publish(headline={"c": 3}) is None
    assert "only under" in capsys.readouterr().out


def test_finding_prints_the_sentence_and_records_it_once(tmp_path, monkeypatch, capsys):
    target = tmp_path / "nb.results.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    assert finding("p50 is 1.23 ms.") is None
    finding("p50 is 1.23 ms.")
    finding("Batching pays 2.0x.")
    publish(headline={"p50_ms": 1.23})
    assert capsys.readouterr().out.startswith("p50 is 1.23 ms.\np50 is 1.23 ms.\nBatching pays 2.0x.\n")
    data = json.loads(target.read_text())
    assert data["findings"] == ["p50 is 1.23 ms.", "Batching pays 2.0x."] and data["headline"] == {"p50_ms": 1.23}
    monkeypatch.delenv(RESULTS_ENV)
    finding("only printed")
    assert capsys.readouterr().out == "only printed\n" and "only printed" not in target.read_text()


def test_publish_writes_a_figure_with_its_spread(tmp_path, monkeypatch):
    from kit import Figure

    target = tmp_path / "nb.results.json"
    monkeypatch.setenv(RESULTS_ENV, str(target))
    publish(headline={"p50_ms": Figure.from_rounds([2.0, 1.0, 3.0], unit="ms", better="lower")})
    assert json.loads(target.read_text())["headline"]["p50_ms"] == {
        "value": 2.0, "low": 1.0, "high": 3.0, "n": 3, "unit": "ms", "better": "lower"}


def test_offered_drops_controls_that_cannot_change_anything():
    assert not offered(None)
    assert not offered([1]) and not offered([1, 1]) and not offered((5, 5, 1))
    assert offered([1, 8]) and offered((0.0, 1.0, 0.1)) and offered({"a": 1, "b": 2})


def test_readout_precision_follows_the_step():
    assert (_decimals(0.001), _decimals(0.5), _decimals(5), _decimals(0.005), _decimals(1e-4)) == (3, 1, 0, 3, 4)


def test_headless_returns_the_value_at_the_defaults():
    calls = []

    def fn(x: int = 3, y: float = 0.5):
        calls.append((x, y))
        return x * y

    assert interactive(fn, x=(1, 10, 1), y=(0.0, 1.0, 0.1)) == 1.5
    assert calls == [(3, 0.5)]


def test_live_shows_the_result_at_once_and_reruns_when_a_control_moves(monkeypatch):
    import ipywidgets

    shown = []
    monkeypatch.setattr(publish_module, "is_headless", lambda: False)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    changes = []

    def fn(budget: float = 0.996, batch: int = 1, unused: str = "a"):
        return (budget, batch)

    value = interactive(fn, on_change=changes.append, budget=(0.9, 1.0, 0.001), batch=[1], unused=None)
    assert value == (0.996, 1)  # the same value papermill gets, never None
    (panel,) = shown
    assert "kit-interactive" in panel._dom_classes
    slider, out = panel.children  # batch (one choice) and unused (None) are not offered
    assert isinstance(slider, ipywidgets.FloatSlider) and isinstance(out, ipywidgets.Output)
    assert slider.value == pytest.approx(0.996) and slider.readout_format == ".3f"
    assert slider.description == "budget" and slider.style.description_width == "initial"
    assert slider.continuous_update is False
    slider.value = 0.95
    assert changes == [(0.95, 1)]


def test_live_with_nothing_to_offer_is_the_static_result(monkeypatch):
    shown = []
    monkeypatch.setattr(publish_module, "is_headless", lambda: False)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    assert interactive(lambda batch=8: batch * 2, batch=[8]) == 16
    assert shown == []


def test_a_slow_function_gets_a_button_that_says_how_long(monkeypatch):
    import ipywidgets

    shown = []
    monkeypatch.setattr(publish_module, "is_headless", lambda: False)
    monkeypatch.setattr(publish_module, "SLOW_CALL_S", -1.0)
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    changes = []
    interactive(lambda n=2: n, on_change=changes.append, n=(1, 4, 1))
    slider, button, _ = shown[0].children
    assert isinstance(button, ipywidgets.Button) and "takes ~" in button.description
    slider.value = 3
    assert changes == []  # not re-run on every move
    button.click()
    assert changes == [3]


def test_live_first_call_failure_fails_the_cell(monkeypatch):
    monkeypatch.setattr(publish_module, "is_headless", lambda: False)
    monkeypatch.setattr("IPython.display.display", lambda obj: None)

    def broken(n: int = 1):
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        interactive(broken, n=(1, 4, 1))

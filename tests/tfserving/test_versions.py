"""The model registry: policies, labels, promote/rollback, atomic switches, half-written versions, models.config."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from kit.engines.base import Predictor, Wrapper
from kit.engines.onnxruntime import OnnxRuntimeEngine
from kit.errors import Closed, ConfigError, KitError, ModelLoadError, ServingError
from kit.serve.routing import Router, WeightedSplit
from kit.testing import ONNX_IR_VERSION
from kit.tfserving.versions import (
    ModelRegistry,
    VersionPolicy,
    model_path,
    models_config_text,
    read_models_config,
    write_models_config,
)

WIDTH = 4


def _const_model(path: Path, value: float) -> Path:
    """``y = x + value``: each version answers with its own offset, so tests see who answered."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])
    c = onnx.numpy_helper.from_array(np.full((WIDTH,), value, np.float32), "c")
    model = helper.make_model(helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "add", [x], [y], [c]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ONNX_IR_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {v: _const_model(root / f"v{v}.onnx", float(v * 10)) for v in range(1, 5)}


X = {"x": np.zeros((1, WIDTH), np.float32)}


def _answer(predictor: Predictor) -> int:
    return int(predictor.predict(X)["y"][0, 0]) // 10


class Tracking:
    """A loader that records every engine it made, so tests can check which were closed."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.engines: dict[int, Predictor] = {}
        self.gate = gate

    def __call__(self, path: Path) -> Predictor:
        engine = OnnxRuntimeEngine(path)
        version = int(path.parent.name)
        if self.gate is not None:
            engine = Gated(engine, self.gate)
        self.engines[version] = engine
        return engine


class Gated(Wrapper):
    """Blocks each request until ``gate`` opens: a request in flight across a switch."""

    def __init__(self, inner, gate):
        super().__init__(inner)
        self.gate = gate
        self.entered = threading.Event()

    def predict(self, feeds):
        self.entered.set()
        assert self.gate.wait(10)
        return self.inner.predict(feeds)


def test_version_policies_select_like_tensorflow_serving():
    available = [1, 2, 3, 5]
    assert VersionPolicy.latest(1).select(available) == [5]
    assert VersionPolicy.latest(2).select(available) == [3, 5]
    assert VersionPolicy.specific(2, 4).select(available) == [2]
    assert VersionPolicy.all().select(available) == available
    assert str(VersionPolicy.latest(2)) == "latest{2}" and str(VersionPolicy.specific(3, 1)) == "specific{1, 3}"
    for bad in (dict(kind="newest"), dict(kind="latest", num_versions=0), dict(kind="specific")):
        with pytest.raises(ConfigError):
            VersionPolicy(**bad)


def test_register_lays_out_versions_and_serves_the_latest(tmp_path, sources):
    reg = ModelRegistry(tmp_path / "m", "m")
    assert reg.served_versions == [] and reg.input_specs == ()
    with pytest.raises(ServingError, match="serves no version"):
        reg.predict(X)
    assert reg.register(sources[1]) == 1
    assert (tmp_path / "m" / "1" / "model.onnx").is_file()
    assert isinstance(reg, Predictor) and _answer(reg) == 1
    assert reg.register(sources[2]) == 2
    assert reg.served_versions == [2] and _answer(reg) == 2  # latest{1} retired version 1
    with pytest.raises(ConfigError, match="immutable"):
        reg.register(sources[3], version=2)
    names = [p.name for p in (tmp_path / "m").iterdir()]
    assert names and not any(n.startswith(".") for n in names)
    reg.close()


def test_policies_specific_and_all_and_version_views(tmp_path, sources):
    for v in (1, 2, 3):
        _const_model(tmp_path / "m" / str(v) / "model.onnx", v * 10.0)
    reg = ModelRegistry(tmp_path / "m", policy=VersionPolicy.specific(1, 3))
    assert reg.served_versions == [1, 3]
    assert _answer(reg.predictor(version=1)) == 1 and _answer(reg) == 3
    with pytest.raises(ModelLoadError, match="not served"):
        reg.predictor(version=2).predict(X)
    reg.close()
    reg = ModelRegistry(tmp_path / "m", policy=VersionPolicy.all())
    assert reg.served_versions == [1, 2, 3]
    view = reg.predictor(version=2)
    assert _answer(view) == 2 and view.input_specs == reg.input_specs
    view.close()
    with pytest.raises(Closed):
        view.predict(X)
    assert _answer(reg) == 3  # closing a view closes nothing else
    with pytest.raises(ConfigError):
        reg.predictor(version=1, label="stable")
    reg.close()


def test_labels_promote_and_rollback(tmp_path, sources):
    loader = Tracking()
    reg = ModelRegistry(tmp_path / "m", policy=VersionPolicy.latest(1), loader=loader)
    reg.register(sources[1])
    reg.set_label("stable", 1)
    reg.register(sources[2])
    assert reg.served_versions == [1, 2]  # the stable label pins version 1 beyond latest{1}
    assert _answer(reg) == 1  # the default label answers
    reg.set_label("canary", 2)
    assert _answer(reg.predictor(label="canary")) == 2
    with pytest.raises(ConfigError, match="not served"):
        reg.set_label("canary", 7)
    assert reg.promote() == 2
    assert reg.labels == {"stable": 2} and _answer(reg) == 2
    assert reg.served_versions == [1, 2]  # version 1 stays loaded as the rollback target
    assert reg.rollback() == 1
    assert reg.labels == {"stable": 1} and _answer(reg) == 1
    with pytest.raises(ConfigError, match="no earlier version"):
        reg.rollback()
    with pytest.raises(ModelLoadError, match="no label 'canary'"):
        reg.predictor(label="canary").predict(X)
    reg.remove_label("stable")
    reg.poll()
    assert reg.served_versions == [2] and loader.engines[1].closed  # unpinned and retired
    kinds = list(reg.to_frame()["event"])
    assert kinds.count("label") >= 3 and "rollback" in kinds and "closed" in kinds
    reg.close()
    assert loader.engines[2].closed


def test_switch_under_concurrent_traffic_fails_no_request(tmp_path, sources):
    loader = Tracking()
    reg = ModelRegistry(tmp_path / "m", policy=VersionPolicy.latest(1), loader=loader)
    reg.register(sources[1])
    stop = threading.Event()
    answers: list[list[int]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def client(mine: list[int]):
        while not stop.is_set():
            try:
                mine.append(_answer(reg))
            except BaseException as exc:  # any failure at all fails the test
                errors.append(exc)

    clients = [threading.Thread(target=client, args=(a,)) for a in answers]
    for t in clients:
        t.start()
    reg.start_polling(0.01)
    wait = threading.Event()
    for v in (2, 3, 4):
        # written by another process in TF Serving style: a hidden dir renamed into place
        tmp = tmp_path / "m" / f".writing-{v}"
        _const_model(tmp / "model.onnx", v * 10.0)
        tmp.rename(tmp_path / "m" / str(v))
        while reg.served_versions != [v]:
            wait.wait(0.01)
        n = sum(map(len, answers))
        while sum(map(len, answers)) < n + 20:
            wait.wait(0.001)
    stop.set()
    for t in clients:
        t.join()
    reg.stop_polling()
    assert errors == []
    assert sum(map(len, answers)) > 60
    for mine in answers:  # each client's requests only ever move forward
        assert mine == sorted(mine)
    assert _answer(reg) == 4
    assert {a for mine in answers for a in mine} == {1, 2, 3, 4}
    assert all(loader.engines[v].closed for v in (1, 2, 3)) and not loader.engines[4].closed
    reg.close()


def test_in_flight_request_finishes_on_the_old_version_which_is_closed_after(tmp_path, sources):
    gate = threading.Event()
    loader = Tracking(gate)
    reg = ModelRegistry(tmp_path / "m", loader=loader)
    reg.register(sources[1])
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(_answer(reg)))
    worker.start()
    assert loader.engines[1].entered.wait(10)  # the request holds version 1
    reg.register(sources[2])
    assert reg.served_versions == [2]
    old = loader.engines[1]
    assert not old.closed and reg.stats()["versions"] == {2: {"requests": 0, "in_flight": 0}}
    gate.set()
    worker.join(10)
    assert result == [1]  # finished on the version it started on
    assert old.closed  # and that version was closed once it returned
    assert _answer(reg) == 2
    reg.close()


def test_half_written_and_broken_versions_are_never_served(tmp_path, sources, caplog):
    reg = ModelRegistry(tmp_path / "m")
    reg.register(sources[1])
    (tmp_path / "m" / "2").mkdir()  # a writer created the directory but no model file yet
    (tmp_path / "m" / "2" / "variables").mkdir()
    (tmp_path / "m" / ".incoming-3-abc").mkdir()  # someone's temporary directory
    _const_model(tmp_path / "m" / ".incoming-3-abc" / "model.onnx", 30.0)
    (tmp_path / "m" / "notaversion").mkdir()
    assert reg.scan() == [1]
    assert reg.poll() is False and _answer(reg) == 1
    full = sources[2].read_bytes()
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(full[: len(full) // 2])  # truncated mid-copy
    with caplog.at_level(logging.WARNING, logger="kit.tfserving.versions"):
        assert reg.poll() is False
    assert "version 2 could not be loaded and is skipped" in caplog.text
    assert reg.served_versions == [1] and _answer(reg) == 1 and reg.stats()["load_failures"] == 1
    assert reg.poll() is False and reg.stats()["load_failures"] == 1  # not retried while unchanged
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(full)  # the copy completes: files changed, tried again
    assert reg.poll() is True and _answer(reg) == 2
    reg.close()


def test_min_age_waits_for_in_place_copies_to_settle(tmp_path, sources):
    now = [0.0]
    reg = ModelRegistry(tmp_path / "m", min_age_s=5.0, clock=lambda: now[0])
    _const_model(tmp_path / "m" / "1" / "model.onnx", 10.0)
    mtime = (tmp_path / "m" / "1" / "model.onnx").stat().st_mtime
    now[0] = mtime + 1.0
    assert reg.scan() == []
    now[0] = mtime + 6.0
    assert reg.scan() == [1] and reg.poll() and _answer(reg) == 1
    reg.close()


def test_models_config_round_trip(tmp_path, sources):
    config = tmp_path / "models.config"
    reg = ModelRegistry(tmp_path / "digits", "digits", VersionPolicy.latest(2), config_path=config)
    reg.register(sources[1])
    reg.register(sources[2])
    reg.set_label("stable", 1)
    reg.set_label("canary", 2)
    other = ModelRegistry(tmp_path / "other", "other", VersionPolicy.specific(3, 4))
    parsed = read_models_config(config)  # written on every label change
    assert parsed == [{"name": "digits", "base_path": str((tmp_path / "digits").absolute()),
                       "model_platform": "onnx", "policy": VersionPolicy.latest(2),  # ONNX versions
                       "labels": {"stable": 1, "canary": 2}}]
    both = write_models_config(tmp_path / "all.config", [reg, other])
    models = read_models_config(both)
    assert [m["name"] for m in models] == ["digits", "other"]
    assert models[1]["policy"] == VersionPolicy.specific(3, 4)
    text = models_config_text([other])
    assert "model_config_list" in text and "specific" in text and "versions: 3" in text
    all_policy = ModelRegistry(tmp_path / "x", "x", VersionPolicy.all())
    assert read_models_config(all_policy.write_config(tmp_path / "x.config"))[0]["policy"] == VersionPolicy.all()
    with pytest.raises(ConfigError, match="unique"):
        models_config_text([reg, reg])
    (tmp_path / "bad.config").write_text("model_config_list { nonsense: 1 }")
    with pytest.raises(ConfigError, match="models.config"):
        read_models_config(tmp_path / "bad.config")
    for r in (reg, other, all_policy):
        r.close()


def test_canary_rollout_through_a_router_over_label_views(tmp_path, sources):
    reg = ModelRegistry(tmp_path / "m", policy=VersionPolicy.latest(2))
    reg.register(sources[1])
    reg.register(sources[2])
    reg.set_label("stable", 1)
    reg.set_label("canary", 2)
    split = WeightedSplit.canary("stable", "canary", 20, seed=0)
    router = Router({"stable": reg.predictor(label="stable"), "canary": reg.predictor(label="canary")}, split)
    answers = [_answer(router) for _ in range(500)]
    assert 0.15 < answers.count(2) / 500 < 0.25
    reg.promote()  # canary -> stable; the canary label is gone
    split.set_weights({"stable": 1, "canary": 0})
    assert {_answer(router) for _ in range(50)} == {2}
    reg.rollback()
    assert {_answer(router) for _ in range(50)} == {1}
    router.close()
    assert _answer(reg) == 1  # views closed, registry still serving
    reg.close()
    with pytest.raises(KitError):
        reg.predict(X)


def test_model_path_finds_each_layout(tmp_path):
    (tmp_path / "1").mkdir()
    assert model_path(tmp_path / "1") is None
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"x")
    assert model_path(tmp_path / "1") == tmp_path / "1"
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "model.tflite").write_bytes(b"x")
    assert model_path(tmp_path / "2") == tmp_path / "2" / "model.tflite"


def test_a_folder_named_with_a_non_ascii_digit_is_not_a_version(tmp_path, sources):
    """Issue 16 #11: "²".isdigit() is True and int("²") raised from the constructor, so every poll broke."""
    (tmp_path / "m" / "²").mkdir(parents=True)
    (tmp_path / "m" / "٣").mkdir()
    reg = ModelRegistry(tmp_path / "m", "m")
    try:
        assert reg.scan() == []
        assert reg.register(sources[1]) == 1  # the next number ignores them too
        assert reg.scan() == [1]
    finally:
        reg.close()

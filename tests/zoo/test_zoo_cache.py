"""The zoo's cache and data, without building a model: keys, verification, locking, inputs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kit.errors import ConfigError, ModelLoadError
from kit.testing import run_threads
from kit.zoo import (
    MODELS,
    RETIRED,
    digits_data,
    eval_hints,
    get_model,
    model_inputs,
    quality_caveat,
    sample_feeds,
)
from kit.zoo.cache import MANIFEST, cache_root, entry_key, get_or_build, read_entry
from kit.zoo.catalog import BUILDER_VERSION, resolve_params

REQUIRED = ("model.bin", "sub")


class FakeBuilder:
    """Writes a two-file entry and counts its calls; optionally slow or failing."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay, self.fail = delay, fail
        self.lock = threading.Lock()

    def __call__(self, tmp: Path) -> dict:
        with self.lock:
            self.calls += 1
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "model.bin").write_bytes(b"weights" * 100)
        time.sleep(self.delay)
        if self.fail:
            raise ModelLoadError("builder failed half way")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "part.txt").write_text("part")
        return {"name": "fake"}


def test_build_once_then_hit(tmp_path):
    build = FakeBuilder()
    first = get_or_build(tmp_path / "e", REQUIRED, build)
    second = get_or_build(tmp_path / "e", REQUIRED, build)
    assert build.calls == 1 and first == second
    assert set(first["files"]) == {"model.bin", "sub/part.txt"}


@pytest.mark.parametrize("damage", [
    lambda e: (e / "model.bin").write_bytes(b"truncated"),      # content changed
    lambda e: (e / "sub" / "part.txt").unlink(),                 # file missing
    lambda e: (e / MANIFEST).write_text("{not json"),            # manifest corrupt
    lambda e: (e / MANIFEST).unlink(),                           # build never finished
])
def test_corrupt_or_partial_entries_are_rebuilt(tmp_path, damage, caplog):
    build = FakeBuilder()
    get_or_build(tmp_path / "e", REQUIRED, build)
    damage(tmp_path / "e")
    assert read_entry(tmp_path / "e", REQUIRED) is None
    manifest = get_or_build(tmp_path / "e", REQUIRED, build)
    assert build.calls == 2 and read_entry(tmp_path / "e", REQUIRED) == manifest
    assert (tmp_path / "e" / "model.bin").read_bytes() == b"weights" * 100


def test_failed_build_leaves_nothing_behind(tmp_path):
    with pytest.raises(ModelLoadError, match="half way"):
        get_or_build(tmp_path / "e", REQUIRED, FakeBuilder(fail=True))
    assert [p.name for p in tmp_path.iterdir()] == ["e.lock"]


def test_concurrent_callers_build_once(tmp_path):
    build = FakeBuilder(delay=0.3)
    results = run_threads(lambda _: get_or_build(tmp_path / "e", REQUIRED, build), 3)
    assert build.calls == 1 and len(results) == 3 and all(r == results[0] for r in results)


def test_cache_key_covers_params_seed_and_builder(monkeypatch, tmp_path):
    base = entry_key("digits_cnn", {"epochs": 30}, 0, BUILDER_VERSION)
    assert base == entry_key("digits_cnn", {"epochs": 30}, 0, BUILDER_VERSION)
    others = {entry_key("digits_cnn", {"epochs": 5}, 0, BUILDER_VERSION),
              entry_key("digits_cnn", {"epochs": 30}, 1, BUILDER_VERSION),
              entry_key("digits_cnn", {"epochs": 30}, 0, BUILDER_VERSION + 1),
              entry_key("mobilenet_v2", {"epochs": 30}, 0, BUILDER_VERSION)}
    assert base not in others and len(others) == 4
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    assert cache_root() == tmp_path / "zoo"


def test_bad_names_formats_and_params_are_config_errors():
    with pytest.raises(ConfigError, match="digits_cnn"):
        get_model("resnet")
    with pytest.raises(ConfigError, match="format"):
        get_model("digits_cnn", format="pb")
    with pytest.raises(ConfigError, match="unknown parameter"):
        get_model("digits_cnn", layers=3)
    with pytest.raises(ConfigError, match="seed"):
        get_model("digits_cnn", seed=-1)
    with pytest.raises(ConfigError, match="int >= 1"):
        resolve_params("digits_cnn", {"epochs": 0})
    with pytest.raises(ConfigError, match=r"\[2, 512\]"):
        resolve_params("minilm", {"seq_len": 1})


def test_a_retired_name_names_its_replacement():
    with pytest.raises(ConfigError, match="retired: use 'minilm'") as info:
        get_model("bert_encoder")
    message = str(info.value)
    assert "\n" not in message and "the zoo has" in message and "'bert_encoder'" not in message.split("the zoo has")[1]
    with pytest.raises(ConfigError, match="retired"):
        sample_feeds("bert_encoder")
    assert RETIRED == {"bert_encoder": "minilm"} and "bert_encoder" not in MODELS


def test_quality_caveat_flags_random_weights_only(tmp_path, monkeypatch):
    from kit.artifacts import ModelArtifact

    assert {name: bool(quality_caveat(name)) for name in MODELS} == {
        "digits_cnn": False, "mobilenet_v2": True, "minilm": False, "ocr_rec": False}
    assert "random weights" in quality_caveat("mobilenet_v2") and "not accuracy" in quality_caveat("mobilenet_v2")
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    entry = cache_root() / "mobilenet_v2-0123abcd"
    entry.mkdir(parents=True)
    (entry / "model.onnx").write_bytes(b"")
    zoo_file = ModelArtifact(entry / "model.onnx", "onnx", name="mobilenet_v2-onnx")
    variant = zoo_file.derive(tmp_path / "q.onnx", "quantize_dynamic", name="q")
    assert quality_caveat(str(entry / "model.onnx")) == quality_caveat(variant) == quality_caveat("mobilenet_v2")
    assert quality_caveat(tmp_path / "mine.onnx") == quality_caveat("resnet") == quality_caveat(None) == ""


def test_digits_split_is_fixed_stratified_and_scaled():
    data = digits_data()
    assert data.x_train.shape == (1347, 8, 8, 1) and data.x_test.shape == (450, 8, 8, 1)
    assert data.x_train.dtype == np.float32 and data.y_test.dtype == np.int64
    assert 0.0 <= data.x_test.min() and data.x_test.max() <= 1.0
    held_out = np.bincount(data.y_test) / (np.bincount(data.y_test) + np.bincount(data.y_train))
    assert held_out.min() > 0.24 and held_out.max() < 0.26  # every class held out in proportion
    again = digits_data(0)
    np.testing.assert_array_equal(again.y_test, data.y_test)
    assert not np.array_equal(digits_data(1).y_test, data.y_test)


@pytest.mark.parametrize("name", MODELS)
def test_sample_feeds_fit_the_model_inputs(name):
    from kit.specs import check_feeds

    feeds = sample_feeds(name, batch_size=3, seed=1)
    check_feeds(model_inputs(name), feeds)
    assert all(a.shape[0] == 3 for a in feeds.values())
    np.testing.assert_array_equal(feeds[next(iter(feeds))], sample_feeds(name, batch_size=3, seed=1)[next(iter(feeds))])


def test_cli_zoo_names_unknown_models(capsys):
    from kit.cli import main

    assert main(["zoo", "resnet"]) == 2
    assert "the zoo has" in capsys.readouterr().err


def test_a_killed_builds_temporary_folder_is_removed_on_the_next_build(tmp_path):
    """Issue 16 #14: a killed zoo build left `.NAME-KEY.XXXX/` in the cache for good."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # a build killed before it cleaned up: its folder is named after its (now gone) pid
    entry = tmp_path / "fake-0123"
    stale = tmp_path / f".fake-0123.{dead.pid}.abc123"
    (stale / "fake-0123").mkdir(parents=True)
    (stale / "fake-0123" / "model.bin").write_bytes(b"half")
    get_or_build(entry, REQUIRED, FakeBuilder())
    assert not stale.exists() and read_entry(entry, REQUIRED) is not None


def test_an_entry_path_taken_by_a_file_is_rebuilt_not_a_traceback(tmp_path):
    """Issue 16 #11: a file where the entry belongs raised NotADirectoryError from rmtree."""
    entry = tmp_path / "fake-0123"
    entry.write_text("not an entry")
    manifest = get_or_build(entry, REQUIRED, FakeBuilder())
    assert manifest["name"] == "fake" and entry.is_dir()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_the_builder_child_dies_with_its_parent(tmp_path):
    """Issue 16 #14: after kill -9 of the notebook, the builder child ran on as an orphan."""
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "sleeper.py").write_text(
        "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    pidfile = tmp_path / "child.pid"
    parent_code = ("import subprocess, sys, time\nfrom kit.zoo.cache import child_command\n"
                   f"subprocess.Popen(child_command('sleeper', [{str(pidfile)!r}]))\ntime.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[2])])}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], env=env)
    try:
        for _ in range(300):  # bounded: the child writes its pid within a few seconds
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert _state(child) not in ("gone", "Z")
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        for _ in range(200):  # hang guard 10 s; the parent-death signal acts at once
            if _state(child) in ("gone", "Z"):
                break
            time.sleep(0.05)
        assert _state(child) in ("gone", "Z")
    finally:
        parent.kill()
        if pidfile.exists() and pidfile.read_text() and _state(int(pidfile.read_text())) not in ("gone", "Z"):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_eval_hints_judge_minilm_by_its_embedding():
    from kit.optimize.evaluate import EvalConfig

    assert eval_hints("minilm") == {"output": "sentence_embedding", "top1": False,
                                    "padding_mask": {"attention_mask": ("last_hidden_state",)}}
    assert eval_hints("digits_cnn") == eval_hints("mine.onnx") == {}
    config = EvalConfig(**eval_hints("minilm"))
    assert config.top1 is False and config.padding_mask == {"attention_mask": ("last_hidden_state",)}
    assert set(config.padding_mask) <= {s.name for s in model_inputs("minilm")}  # names the zoo's own input

"""kit.data: the user's data or honest synthetic inputs, checked against the model before any long work."""

from __future__ import annotations

import numpy as np
import pytest

from kit.data import Dataset, load_data
from kit.errors import ConfigError, InputError
from kit.specs import TensorSpec

IMAGE = (TensorSpec("x", np.float32, ("batch", 3, 8, 8)),)
STATEFUL = (TensorSpec("input", np.float32, ("batch", "samples")), TensorSpec("state", np.float32, (2, "batch", 128)),
            TensorSpec("sr", np.int64, ()))
TEXT = (TensorSpec("ids", np.int64, ("batch", "seq")), TensorSpec("mask", np.float32, ("batch", "seq")))


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((20, 3, 8, 8)).astype(np.float32), labels=np.arange(20) % 3)
    return path


def test_npz_with_labels_splits_without_overlap(npz):
    ds = load_data(npz, IMAGE)
    assert len(ds) == 20 and not ds.synthetic and ds.labels.shape == (20,)
    assert ds.describe() == "user data data.npz: 20 samples, x [20,3,8,8] float32, labels (20)"
    cal, ev = ds.split(calibration=8, evaluation=10)
    assert len(cal) == 8 and len(ev) == 10 and cal.labels.shape == (8,)
    rows = lambda d: {d.arrays["x"][i].tobytes() for i in range(len(d))}
    assert not rows(cal) & rows(ev)
    assert len(ds.split(calibration=5)[1]) == 15
    with pytest.raises(ConfigError, match="has 20 samples, too few for calibration=16 and evaluation=8"):
        ds.split(calibration=16, evaluation=8)
    assert [b["x"].shape[0] for b in ds.batches(8)] == [8, 8, 4]


def test_engine_specs_are_taken_from_anything_with_input_specs(npz):
    class Engine:
        input_specs = IMAGE

    assert len(load_data(npz, Engine())) == 20


@pytest.mark.parametrize("arrays, needle", [
    ({"image": np.zeros((4, 3, 8, 8), np.float32)}, r"missing \['x'\], unknown \['image'\]"),
    ({"x": np.zeros((4, 3, 8, 8), np.float64)}, "dtype float64, expected float32"),
    ({"x": np.zeros((4, 3, 9, 8), np.float32)}, "axis 2"),
    ({"x": np.zeros((4, 3, 8), np.float32)}, "rank 3"),
    ({"x": np.zeros((4, 3, 8, 8), np.float32), "labels": np.zeros(5)}, "labels has shape"),
])
def test_npz_that_does_not_fit_the_model(tmp_path, arrays, needle):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=needle) as info:
        load_data(tmp_path / "bad.npz", IMAGE)
    assert "labels" in needle or "x: float32[batch, 3, 8, 8]" in str(info.value)


def test_paths_that_are_not_data(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "fake.npz").write_text("not a zip")
    with pytest.raises(ConfigError, match="is not a .npz file"):
        load_data(tmp_path / "notes.txt", IMAGE)
    with pytest.raises(ConfigError, match="cannot read .* as .npz"):
        load_data(tmp_path / "fake.npz", IMAGE)
    with pytest.raises(ConfigError, match="data path does not exist.*module:function"):
        load_data(tmp_path / "missing.npz", IMAGE)


@pytest.fixture
def feeds_module(tmp_path, monkeypatch):
    (tmp_path / "userfeeds.py").write_text('''
import numpy as np

def batch():
    return {"x": np.ones((6, 3, 8, 8), np.float32), "labels": np.arange(6)}

def same_shape():
    return [{"x": np.full((1, 3, 8, 8), i, np.float32), "labels": [i]} for i in range(5)]

def sentences():  # token ids of varying length, one request each
    return ({"ids": np.ones((1, n), np.int64), "mask": np.ones((1, n), np.float32)} for n in (3, 7, 5))

def number():
    return 42

def strings():
    return ["a", "b"]

def broken():
    raise RuntimeError("tokenizer file not found")

def wrong_dtype():
    return {"x": np.ones((2, 3, 8, 8), np.int32)}

not_callable = 3
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_callable_returning_a_mapping_or_same_shaped_feeds(feeds_module):
    ds = load_data("userfeeds:batch", IMAGE)
    assert len(ds) == 6 and list(ds.labels) == list(range(6))
    ds = load_data("userfeeds:same_shape", IMAGE)
    assert ds.arrays["x"].shape == (5, 3, 8, 8) and list(ds.labels) == [0, 1, 2, 3, 4]
    assert ds.describe().startswith("user data userfeeds:same_shape: 5 samples")
    ds = load_data(f"{feeds_module / 'userfeeds.py'}:batch", IMAGE)  # a file path works too
    assert len(ds) == 6


def test_callable_returning_feeds_of_varying_shape_keeps_them_apart(feeds_module):
    ds = load_data("userfeeds:sentences", TEXT)
    assert ds.arrays is None and len(ds) == 3 and [r["ids"].shape[1] for r in ds.batches()] == [3, 7, 5]
    assert "3 requests of varying shape" in ds.describe()
    cal, ev = ds.split(calibration=1, evaluation=2)
    assert len(cal) == 1 and len(ev) == 2
    with pytest.raises(ConfigError, match="one request at a time"):
        ds.batches(2)


@pytest.mark.parametrize("spec, error, needle", [
    ("nosuchmodule_xyz:feeds", ConfigError, "cannot import 'nosuchmodule_xyz'"),
    ("userfeeds:missing", ConfigError, "has no function 'missing'"),
    ("userfeeds:not_callable", ConfigError, "has no function 'not_callable'"),
    ("userfeeds:number", ConfigError, "returned int; expected a mapping"),
    ("userfeeds:strings", ConfigError, "yielded str as item 0"),
    ("userfeeds:broken", ConfigError, "raised RuntimeError: tokenizer file not found"),
    ("userfeeds:wrong_dtype", InputError, "dtype int32, expected float32"),
    ("/nowhere/feeds.py:f", ConfigError, "cannot import"),
])
def test_callables_that_fail_say_what_was_expected(feeds_module, spec, error, needle):
    with pytest.raises(error, match=needle) as info:
        load_data(spec, IMAGE)
    assert "\n" not in str(info.value)


def test_synthetic_inputs_say_so_and_honour_declared_shapes_and_ranges():
    ds = load_data(None, STATEFUL, input_shapes={"input": [1, 512]}, value_ranges={"sr": (16000, 16000)}, samples=10)
    assert ds.synthetic and len(ds) == 10 and ds.labels is None
    assert ds.arrays["input"].shape == (10, 512) and ds.arrays["state"].shape == (2, 10, 128)
    assert ds.arrays["sr"] == 16000
    text = ds.describe()
    assert text.startswith("synthetic inputs from the model's specs (input_shapes {'input': [1, 512]}; value_ranges")
    assert text.endswith("quality is agreement with float32, not accuracy")
    cal, _ = ds.split(calibration=4, evaluation=6)
    assert cal.arrays["state"].shape == (2, 4, 128) and cal.arrays["sr"] == 16000
    batch = ds.batches(3)[0]
    assert batch["state"].shape == (2, 3, 128) and batch["input"].shape == (3, 512)
    assert ds.to_record()["synthetic"] is True


def test_synthetic_refuses_an_undeclared_sample_rate():
    with pytest.raises(InputError, match="'sr'.*value_ranges"):
        load_data(None, STATEFUL)
    with pytest.raises(ConfigError, match="samples must be"):
        load_data(None, IMAGE, samples=0)


def test_synthetic_shared_dims_and_a_batch_one_export():
    ds = load_data(None, TEXT, samples=4)
    assert ds.arrays["ids"].shape == ds.arrays["mask"].shape == (4, 16)
    fixed = (TensorSpec("x", np.float32, (1, 3, 8, 8)), TensorSpec("scale", np.float32, (2,)))
    ds = load_data(None, fixed, samples=5)
    assert len(ds) == 5 and ds.arrays["x"].shape == (5, 3, 8, 8) and ds.arrays["scale"].shape == (2,)
    assert [b["x"].shape for b in ds.batches()] == [(1, 3, 8, 8)] * 5
    with pytest.raises(ConfigError, match="fixed batch"):
        ds.batches(2)


def test_state_model_runs_on_its_dataset(tmp_path):
    import onnxruntime as ort
    from onnx_models import make_state_model

    session = ort.InferenceSession(str(make_state_model(tmp_path / "vad.onnx")), providers=["CPUExecutionProvider"])
    np.savez(tmp_path / "audio.npz", input=np.ones((6, 512), np.float32), state=np.zeros((2, 6, 128), np.float32),
             sr=np.array(8000, np.int64))
    ds = load_data(tmp_path / "audio.npz", STATEFUL)
    assert isinstance(ds, Dataset) and len(ds) == 6
    outs = [session.run(None, feeds)[0] for feeds in ds.batches(4)]
    np.testing.assert_allclose(np.concatenate(outs), np.full(6, 0.5), rtol=1e-6)  # mean 1 * 8000/16000


# --- real pretrained models (tests/pretrained.py, from the pretrained catalogue; skipped where it is absent
# or the index is out of reach) --------------------------------------------------------------------------

@pytest.mark.slow
def test_silero_vad_state_and_sample_rate_from_specs_and_declared_range():
    """Silero VAD: input [?, ?], state [2, ?, 128], sr int64 scalar (issue 13 item 6, issue 12 item 4)."""
    pretrained = pytest.importorskip("pretrained")
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.models import resolve_model
    from kit.specs import batch_axes, batch_size_of, supports_batching

    with OnnxRuntimeEngine(resolve_model(pretrained.pretrained_path("silero-vad"))) as engine:
        specs = engine.input_specs
        assert batch_axes(specs) == {"input": 0, "state": 1, "sr": None} and supports_batching(specs)[0]
        with pytest.raises(InputError, match="'sr'.*value_ranges"):
            load_data(None, engine)
        ds = load_data(None, engine, input_shapes={"input": [1, 512]}, value_ranges={"sr": (16000, 16000)}, samples=6)
        feeds = ds.batches(3)[0]
        assert batch_size_of(feeds, specs) == 3
        out = engine.predict(feeds)
        assert out["output"].shape == (3, 1) and out["stateN"].shape == (2, 3, 128)


@pytest.mark.slow
def test_paddleocr_classifier_with_unnamed_dims_and_declared_shape():
    """PaddleOCR's angle classifier: x [?, 3, ?, ?] (dims named "?"); 48x192 declared by the user."""
    pretrained = pytest.importorskip("pretrained")
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.models import resolve_model

    with OnnxRuntimeEngine(resolve_model(pretrained.pretrained_path("ppocr-v2-cls"))) as engine:
        ds = load_data(None, engine, input_shapes={"x": [1, 3, 48, 192]}, samples=4)
        assert "x [4,3,48,192] float32" in ds.describe()
        assert engine.predict(ds.batches(2)[0])

import numpy as np
import pytest

from kit.errors import ConfigError, InputError
from kit.specs import (
    MAX_SYNTHETIC_ELEMENTS,
    OTHER_SIZE,
    TensorSpec,
    batch_size_of,
    check_feeds,
    fast_path_ok,
    output_batch_axes,
    resolve_shapes,
    synthetic_feeds,
)

SPECS = (TensorSpec("input_ids", np.int32, ("batch", 8)), TensorSpec("mask", np.int32, (None, 8)),
         TensorSpec("gpu_0/data_0", np.float32, (None, 3, 4)))


def test_resolve_shapes_resolves_batch_and_symbols():
    spec = TensorSpec("x", np.float32, ("batch", "seq", 4))
    assert resolve_shapes([spec], 5)["x"] == (5, OTHER_SIZE, 4)
    assert resolve_shapes([spec], 2, symbols={"seq": 7})["x"] == (2, 7, 4)


def test_synthetic_feeds_satisfy_specs_and_are_seeded():
    feeds = synthetic_feeds(SPECS, batch_size=3, seed=1)
    assert check_feeds(SPECS, feeds).keys() == {s.name for s in SPECS}
    assert feeds["input_ids"].dtype == np.int32 and feeds["gpu_0/data_0"].shape == (3, 3, 4)
    np.testing.assert_array_equal(feeds["input_ids"], synthetic_feeds(SPECS, 3, seed=1)["input_ids"])
    assert batch_size_of(feeds) == 3


@pytest.mark.parametrize("mutate, needle", [
    (lambda f: f.pop("mask"), "missing ['mask']"),
    (lambda f: f.update(extra=np.zeros(1)), "unknown ['extra']"),
    (lambda f: f.update(mask=f["mask"].astype(np.int64)), "dtype int64, expected int32"),
    (lambda f: f.update(mask=np.zeros((2, 9), np.int32)), "axis 1"),
    (lambda f: f.update(mask=np.zeros((2,), np.int32)), "rank 1"),
])
def test_check_feeds_names_what_the_model_expects(mutate, needle):
    feeds = synthetic_feeds(SPECS, batch_size=2)
    mutate(feeds)
    with pytest.raises(InputError) as info:
        check_feeds(SPECS, feeds)
    assert needle in str(info.value)
    assert "gpu_0/data_0: float32[?, 3, 4]" in str(info.value)


def test_check_feeds_rejects_non_mapping():
    with pytest.raises(InputError, match="mapping"):
        check_feeds(SPECS, [1, 2, 3])


def test_batch_size_disagreement():
    with pytest.raises(InputError, match="batch"):
        batch_size_of({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})


# --- batch axes: state and scalar inputs (issue 13 item 6) ---------------------------------------------

STATEFUL = (TensorSpec("input", np.float32, ("batch", "samples")), TensorSpec("state", np.float32, (2, "batch", 128)),
            TensorSpec("sr", np.int64, ()))


def test_batch_axes_finds_state_axis_and_scalar():
    from kit.specs import batch_axes

    assert batch_axes(STATEFUL) == {"input": 0, "state": 1, "sr": None}
    unnamed = (TensorSpec("x", np.float32, (None, 512)), TensorSpec("h", np.float32, (2, None, 64)))
    assert batch_axes(unnamed) == {"x": 0, "h": 1}
    assert batch_axes(STATEFUL, declared={"state": None})["state"] is None
    with pytest.raises(Exception, match="unknown input"):
        batch_axes(STATEFUL, declared={"nope": 0})


def test_batch_size_of_state_model_uses_specs():
    feeds = {"input": np.zeros((3, 512), np.float32), "state": np.zeros((2, 3, 128), np.float32),
             "sr": np.array(16000, np.int64)}
    with pytest.raises(InputError, match="pass specs="):
        batch_size_of(feeds)
    assert batch_size_of(feeds, STATEFUL) == 3
    feeds["state"] = np.zeros((2, 4, 128), np.float32)
    with pytest.raises(InputError, match="state has 4 on axis 1"):
        batch_size_of(feeds, STATEFUL)


def test_batch_size_of_ignores_scalars_without_specs():
    assert batch_size_of({"x": np.zeros((5, 2)), "sr": np.array(8000)}) == 5
    assert batch_size_of({"sr": np.array(8000)}) == 1


def test_fixed_batch_one_model_does_not_support_batching():
    from kit.specs import batch_axes, supports_batching

    fixed = (TensorSpec("x", np.float32, (1, 3, 224, 224)),)
    assert batch_axes(fixed) == {"x": None}
    ok, reason = supports_batching(fixed)
    assert not ok and "batching does not apply" in reason and "float32[1, 3, 224, 224]" in reason
    assert batch_size_of({"x": np.zeros((1, 3, 224, 224), np.float32)}, fixed) == 1
    token_fixed_batch = (TensorSpec("ids", np.int64, (1, "seq")),)  # batch 1 export, dynamic sequence
    assert supports_batching(token_fixed_batch)[0] is False
    ok, reason = supports_batching(STATEFUL)
    assert ok and "state axis 1" in reason and "sr must be equal" in reason


# --- shapes and synthetic inputs ---------------------------------------------------------------------------

def test_shared_symbols_get_one_size_and_defaults_are_realistic():
    from kit.specs import IMAGE_SIZE, SEQUENCE_LENGTH, resolve_shapes

    specs = (TensorSpec("image", np.float32, ("batch", 3, "h", "w")),
             TensorSpec("mask", np.float32, ("batch", "h", "w")), TensorSpec("ids", np.int64, ("batch", None)))
    shapes = resolve_shapes(specs)
    assert shapes == {"image": (1, 3, IMAGE_SIZE, IMAGE_SIZE), "mask": (1, IMAGE_SIZE, IMAGE_SIZE),
                      "ids": (1, SEQUENCE_LENGTH)}
    shapes = resolve_shapes(specs, input_shapes={"image": [2, 3, 640, 320]})
    assert shapes["mask"] == (2, 640, 320) and shapes["ids"][0] == 2
    assert resolve_shapes(specs, 4, input_shapes={"image": [1, 3, 64, 64]})["mask"] == (4, 64, 64)
    assert resolve_shapes((TensorSpec("x", np.float32, (None, None, None, None)),))["x"] == (1, 3, 224, 224)
    unnamed = TensorSpec("x", np.float32, ("batch", 3, "?", "?"))  # a PaddleOCR export: "?" is no name
    assert unnamed.shape == ("batch", 3, None, None)
    assert resolve_shapes((unnamed,), input_shapes={"x": [1, 3, 48, 192]})["x"] == (1, 3, 48, 192)


@pytest.mark.parametrize("shapes, needle", [
    ({"nope": [1]}, "unknown input 'nope'"),
    ({"image": [1, 4, 8, 8]}, "axis 1"),
    ({"image": [1, 3, 8]}, "rank 3, expected 4"),
    ({"image": [1, 3, 0, 8]}, "ints >= 1"),
    ({"image": [1, 3, 8, 8], "mask": [1, 9, 8]}, "two sizes"),
])
def test_bad_input_shapes_are_config_errors(shapes, needle):
    from kit.errors import ConfigError
    from kit.specs import resolve_shapes

    specs = (TensorSpec("image", np.float32, ("batch", 3, "h", "w")),
             TensorSpec("mask", np.float32, ("batch", "h", "w")))
    with pytest.raises(ConfigError, match=needle):
        resolve_shapes(specs, input_shapes=shapes)


def test_synthetic_feeds_refuse_an_undeclared_scalar_int_and_honour_ranges():
    with pytest.raises(InputError, match=r"integer input 'sr'.*value_ranges=\{'sr'"):
        synthetic_feeds(STATEFUL)
    with pytest.raises(InputError, match="integer input 'k'"):
        synthetic_feeds((TensorSpec("k", np.int32, (1,)),))
    assert synthetic_feeds((TensorSpec("token", np.int64, (1, 1)),))["token"].shape == (1, 1)
    feeds = synthetic_feeds(STATEFUL, 2, value_ranges={"sr": (16000, 16000)}, input_shapes={"input": [1, 512]})
    assert feeds["sr"].shape == () and feeds["sr"] == 16000 and feeds["sr"].dtype == np.int64
    assert feeds["input"].shape == (2, 512) and feeds["state"].shape == (2, 2, 128)
    assert batch_size_of(feeds, STATEFUL) == 2
    floats = synthetic_feeds(STATEFUL, value_ranges={"sr": (8000, 8000), "input": (-1, 1)})
    assert floats["input"].min() >= -1 and floats["input"].max() <= 1


def test_synthetic_token_inputs_look_like_text():
    specs = (TensorSpec("input_ids", np.int64, ("batch", "seq")),
             TensorSpec("attention_mask", np.int64, ("batch", "seq")),
             TensorSpec("token_type_ids", np.int64, ("batch", "seq")))
    feeds = synthetic_feeds(specs, 2)
    assert feeds["input_ids"].shape == (2, 16) and feeds["input_ids"].max() < 100
    assert (feeds["attention_mask"] == 1).all() and (feeds["token_type_ids"] == 0).all()


@pytest.mark.parametrize("ranges, needle", [({"nope": (0, 1)}, "unknown input"), ({"sr": (2, 1)}, "low <= high"),
                                            ({"sr": 16000}, "low <= high")])
def test_bad_value_ranges(ranges, needle):
    from kit.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        synthetic_feeds(STATEFUL, value_ranges=ranges)


def test_state_model_runs_on_synthetic_feeds(tmp_path):
    """The [2, batch, 128] state + int64 scalar model from issue 13 runs on what synthetic_feeds makes."""
    import onnxruntime as ort
    from onnx_models import make_state_model

    from kit.specs import supports_batching

    path = make_state_model(tmp_path / "state.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    specs = tuple(TensorSpec(i.name, {"tensor(float)": np.float32, "tensor(int64)": np.int64}[i.type],
                             tuple(d if isinstance(d, (int, str)) else None for d in i.shape))
                  for i in session.get_inputs())
    assert supports_batching(specs)[0]
    feeds = synthetic_feeds(specs, 3, value_ranges={"sr": (16000, 16000)})
    out, new_state = session.run(None, feeds)
    assert out.shape[0] == 3 and new_state.shape == (2, 3, 128)


# --- one input rule for every engine (issue 16 items 2, 11, 13) ------------------------------------------------

STATE = (TensorSpec("input", np.float32, ("batch", "samples")), TensorSpec("state", np.float32, (2, "batch", 128)),
         TensorSpec("sr", np.int64, ()))


def test_check_feeds_converts_non_native_byte_order_to_the_same_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 16)
    spec = [TensorSpec("x", np.float32, (None, 16))]
    got = check_feeds(spec, {"x": x.astype(">f4")})["x"]
    assert got.dtype == np.float32 and got.dtype.isnative and np.array_equal(got, x)
    assert not fast_path_ok({"x": x.astype(">f4")}, frozenset({"x"})) and fast_path_ok({"x": x}, frozenset({"x"}))


def test_check_feeds_converts_lists_only_when_exact():
    specs = [TensorSpec("f", np.float32, (None, 2)), TensorSpec("i", np.int8, (None, 2))]
    got = check_feeds(specs, {"f": [[1.5, 2]], "i": [[1, -3]]})
    assert got["f"].dtype == np.float32 and got["i"].dtype == np.int8 and got["i"].tolist() == [[1, -3]]
    with pytest.raises(InputError, match="convert exactly to int8"):
        check_feeds(specs, {"f": [[1.5, 2]], "i": [[1, 300]]})  # does not fit
    with pytest.raises(InputError, match="convert exactly to int8"):
        check_feeds(specs, {"f": [[1.5, 2]], "i": [[1.5, 2]]})  # floats into an int input
    with pytest.raises(InputError, match="float64"):
        check_feeds(specs, {"f": np.zeros((1, 2)), "i": [[1, 2]]})  # an array keeps its dtype: refused
    with pytest.raises(InputError, match="rectangular"):
        check_feeds(specs, {"f": [[1.0], [1.0, 2.0]], "i": [[1, 2]]})


def test_check_feeds_refuses_an_empty_batch_along_the_batch_axis():
    feeds = {"input": np.zeros((0, 64), np.float32), "state": np.zeros((2, 0, 128), np.float32),
             "sr": np.array(16000)}
    with pytest.raises(InputError, match="empty batch"):
        check_feeds(STATE, feeds)
    fine = check_feeds(STATE, {**feeds, "input": np.zeros((1, 0), np.float32), "state": np.zeros((2, 1, 128),
                                                                                                   np.float32)})
    assert fine["input"].shape == (1, 0)  # an empty non-batch axis (no samples) is the model's business


def test_batch_size_of_lenient_form_reads_the_batch_axis_and_never_raises():
    feeds = {"input": np.zeros((3, 64)), "state": np.zeros((2, 3, 128)), "sr": np.array(16000)}
    assert batch_size_of(feeds, STATE) == 3 and batch_size_of(feeds, STATE, strict=False) == 3
    assert batch_size_of({"state": np.zeros((2, 5, 128))}, STATE, strict=False) == 5
    assert batch_size_of({"a": np.zeros((2,)), "b": np.zeros((3,))}, strict=False) == 2
    assert batch_size_of({"sr": 16000}, strict=False) == 1 and batch_size_of({}, strict=False) == 0
    assert batch_size_of({"x": object()}, STATE, strict=False) == 1


def test_output_batch_axes_follow_the_batch_symbol_or_an_inputs_shape():
    named = [TensorSpec("out", np.float32, ("batch",)), TensorSpec("new_state", np.float32, (2, "batch", 128))]
    assert output_batch_axes(STATE, named) == {"out": 0, "new_state": 1}
    unnamed = [TensorSpec("output", np.float32, (None, 1)), TensorSpec("stateN", np.float32, (None, None, None))]
    feeds = {"input": np.zeros((3, 64)), "state": np.zeros((2, 3, 128)), "sr": np.array(16000)}
    outputs = {"output": np.zeros((3, 1)), "stateN": np.zeros((2, 3, 128))}
    assert output_batch_axes(STATE, unnamed, feeds, outputs) == {"output": 0, "stateN": 1}


def test_synthetic_feeds_refuse_a_huge_shape_before_allocating():
    huge = [TensorSpec("x", np.float32, (2 ** 31, 2 ** 31))]
    with pytest.raises(InputError, match="input_shapes") as info:
        synthetic_feeds(huge)
    assert f"{MAX_SYNTHETIC_ELEMENTS:,}" in str(info.value)
    with pytest.raises(ConfigError):
        synthetic_feeds(huge, input_shapes={"x": [2, 2]})  # fixed dims cannot be declared away

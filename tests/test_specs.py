import numpy as np
import pytest

from kit.errors import InputError
from kit.specs import TensorSpec, batch_size_of, check_feeds, synthetic_feeds

SPECS = (TensorSpec("input_ids", np.int32, ("batch", 8)), TensorSpec("mask", np.int32, (None, 8)),
         TensorSpec("gpu_0/data_0", np.float32, (None, 3, 4)))


def test_concrete_shape_resolves_batch_and_symbols():
    spec = TensorSpec("x", np.float32, ("batch", "seq", 4))
    assert spec.concrete_shape(5) == (5, 1, 4)
    assert spec.concrete_shape(2, {"seq": 7}) == (2, 7, 4)


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

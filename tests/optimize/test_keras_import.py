"""A user's own .keras file enters the kit through keras_to_savedmodel."""

import numpy as np
import pytest

from kit import create_engine
from kit.errors import ConversionError, ModelLoadError

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    pytest.importorskip("tensorflow")
    from kit._quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="softmax")])
    path = tmp_path_factory.mktemp("keras") / "user.keras"
    model.save(path)
    return path


def test_keras_file_is_exported_checked_and_served(keras_file, tmp_path):
    from kit.optimize import keras_to_savedmodel

    art = keras_to_savedmodel(keras_file, tmp_path / "sm")
    assert art.format == "savedmodel" and art.parent.format == "keras"
    assert art.metrics["max_abs_error"] < 1e-5 and art.metrics["cosine"] > 0.9999
    with create_engine(art) as engine:
        (spec,) = engine.input_specs
        out = engine.predict({spec.name: np.ones((3, 6), np.float32)})
        assert next(iter(out.values())).shape == (3, 4)


def test_engine_refuses_keras_file_with_the_way_forward(keras_file):
    with pytest.raises(ModelLoadError, match="keras_to_savedmodel"):
        create_engine(keras_file)


def test_not_a_keras_file(tmp_path, add_onnx):
    from kit.optimize import keras_to_savedmodel

    with pytest.raises(ConversionError, match="expects a .keras file"):
        keras_to_savedmodel(add_onnx, tmp_path / "sm")
    assert not (tmp_path / "sm").exists()

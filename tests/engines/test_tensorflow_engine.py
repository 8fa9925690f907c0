"""TensorFlowEngine: specs from the signature, dict in/out, bad inputs, signatures, threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kit.errors import Closed, ConfigError, InputError, ModelLoadError

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="session")
def two_io_savedmodel(tmp_path_factory):
    """Two inputs (float32 and int32, symbolic batch), two outputs, and a second signature."""
    tf = pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("tf_engine") / "sm"
    module = tf.Module()
    module.scale = tf.Variable([1.0, 2.0, 3.0, 4.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                  tf.TensorSpec([None, 3], tf.int32, name="ids")])
    def serve(x, ids):
        return {"scaled": x * module.scale, "total": tf.reduce_sum(ids, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def double(x):
        return {"doubled": 2.0 * x}

    module.serve, module.double = serve, double
    tf.saved_model.save(module, str(root), signatures={"serving_default": serve, "double": double})
    return root


@pytest.fixture(scope="module")
def engine(two_io_savedmodel):
    from kit.engines.tensorflow import TensorFlowEngine

    with TensorFlowEngine(two_io_savedmodel) as eng:
        yield eng


def _feeds(batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((batch, 4)).astype(np.float32),
            "ids": rng.integers(0, 10, (batch, 3)).astype(np.int32)}


def test_specs_come_from_the_signature(engine):
    ins = {s.name: s for s in engine.input_specs}
    assert ins["x"].dtype == np.float32 and ins["x"].shape == (None, 4)
    assert ins["ids"].dtype == np.int32 and ins["ids"].shape == (None, 3)
    outs = {s.name: s for s in engine.output_specs}
    assert outs["scaled"].shape == (None, 4) and outs["total"].dtype == np.int32


@pytest.mark.parametrize("batch", [1, 5])
def test_dict_in_dict_out_as_numpy(engine, batch):
    feeds = _feeds(batch)
    out = engine.predict(feeds)
    assert set(out) == {"scaled", "total"} and all(isinstance(v, np.ndarray) for v in out.values())
    np.testing.assert_allclose(out["scaled"], feeds["x"] * np.array([1, 2, 3, 4], np.float32))
    np.testing.assert_array_equal(out["total"], feeds["ids"].sum(axis=1))


def test_other_signature_by_name(two_io_savedmodel):
    from kit.engines.tensorflow import TensorFlowEngine

    with TensorFlowEngine(two_io_savedmodel, signature="double") as eng:
        x = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(eng.predict({"x": x})["doubled"], 2 * x)


def test_missing_signature_lists_the_available_ones(two_io_savedmodel):
    from kit.engines.tensorflow import TensorFlowEngine

    with pytest.raises(ModelLoadError, match=r"no signature 'predict'.*\['double', 'serving_default'\]"):
        TensorFlowEngine(two_io_savedmodel, signature="predict")


@pytest.mark.parametrize("mutate, words", [
    (lambda f: f.pop("ids"), "missing"),
    (lambda f: f.update(x=f["x"].astype(np.float64)), "float64"),
    (lambda f: f.update(x=f["x"][:, :3]), "expected"),
    (lambda f: f.update(extra=f["x"]), "unknown"),
])
def test_bad_inputs_raise_input_error_listing_the_specs(engine, mutate, words):
    feeds = _feeds()
    mutate(feeds)
    with pytest.raises(InputError, match=words) as info:
        engine.predict(feeds)
    assert "x: float32[?, 4]" in str(info.value) and "ids: int32[?, 3]" in str(info.value)


def test_not_a_savedmodel_is_a_load_error(tmp_path):
    from kit.engines.tensorflow import TensorFlowEngine

    with pytest.raises(ModelLoadError, match="not found"):
        TensorFlowEngine(tmp_path / "nothing")
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        TensorFlowEngine(tmp_path)


def test_close_is_idempotent_and_predict_after_close_fails(two_io_savedmodel):
    from kit.engines.tensorflow import TensorFlowEngine

    eng = TensorFlowEngine(two_io_savedmodel)
    eng.close()
    eng.close()
    with pytest.raises(Closed):
        eng.predict(_feeds())


def test_describe_names_devices_and_threads(engine):
    info = engine.describe()
    assert info["engine"] == "tensorflow" and info["signature"] == "serving_default"
    assert any("CPU" in d for d in info["devices"])
    assert {"intra_op_num_threads", "inter_op_num_threads"} <= set(info)


def test_create_engine_dispatches_savedmodels(two_io_savedmodel):
    from kit.engines import create_engine
    from kit.engines.tensorflow import TensorFlowEngine

    with create_engine(two_io_savedmodel) as eng:
        assert isinstance(eng, TensorFlowEngine)


def test_bad_thread_values_are_config_errors(two_io_savedmodel):
    from kit.engines.tensorflow import TensorFlowEngine

    with pytest.raises(ConfigError, match="intra_op_num_threads"):
        TensorFlowEngine(two_io_savedmodel, intra_op_num_threads=-1)


def test_threads_after_tensorflow_started_are_refused(engine, two_io_savedmodel):
    import tensorflow as tf

    from kit.engines.tensorflow import TensorFlowEngine

    current = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.raises(ConfigError, match="before TensorFlow is first used"):
        TensorFlowEngine(two_io_savedmodel, intra_op_num_threads=current + 3)


@pytest.mark.slow
def test_threads_before_first_use_are_applied(two_io_savedmodel):
    """A fresh process: TensorFlow's thread pools are process-wide and fixed at first use."""
    code = textwrap.dedent(f"""
        from kit.engines.tensorflow import TensorFlowEngine
        eng = TensorFlowEngine({str(two_io_savedmodel)!r}, intra_op_num_threads=1, inter_op_num_threads=1)
        info = eng.describe()
        assert info["intra_op_num_threads"] == 1 and info["inter_op_num_threads"] == 1, info
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]

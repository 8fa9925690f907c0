"""The TensorProto and REST JSON codecs agree with TensorFlow's own (tf.make_tensor_proto / tf.make_ndarray)."""

from __future__ import annotations

import numpy as np
import pytest

from kit.engines import tfserving_wire as wire
from kit.errors import InputError, ModelLoadError, Overloaded
from kit.specs import TensorSpec

ARRAYS = [np.arange(6, dtype=np.float32).reshape(2, 3) / 7, np.float64([[1e-300, -2.5]]), np.int8([-128, 127]),
          np.uint8([[0, 255]]), np.int16([-3]), np.uint16([65535]), np.int32([[1], [2]]), np.int64([-(2 ** 62)]),
          np.uint32([2 ** 32 - 1]), np.uint64([2 ** 63]), np.float16([0.5, -65504.0]), np.bool_([[True, False]]),
          np.complex64([1 + 2j]), np.array([b"ab", b"\x00\xff"], dtype=object), np.float32(3.5),
          np.zeros((0, 4), np.float32)]


@pytest.mark.tensorflow
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_tensor_proto_round_trips_through_tensorflow(array):
    from kit._quiet import import_tensorflow

    tf = import_tensorflow()
    ours = wire.make_tensor_proto(array)
    np.testing.assert_array_equal(tf.make_ndarray(ours), array)
    theirs = tf.make_tensor_proto(array)
    decoded = wire.to_ndarray(theirs)
    assert decoded.dtype == (array.dtype if array.dtype != object else np.dtype(object))
    np.testing.assert_array_equal(decoded, array)
    assert decoded.flags.writeable


@pytest.mark.tensorflow
def test_typed_value_fields_and_scalar_fill_decode_like_tensorflow():
    from kit._quiet import import_tensorflow

    tf = import_tensorflow()
    for proto in (tf.make_tensor_proto(1.5, shape=[2, 3]), tf.make_tensor_proto([1, 2], dtype=tf.int32, shape=[4])):
        np.testing.assert_array_equal(wire.to_ndarray(proto), tf.make_ndarray(proto))
    proto = wire.grpc_apis().tensor_pb2.TensorProto(dtype=wire.grpc_apis().types_pb2.DT_HALF)
    proto.tensor_shape.dim.add().size = 2
    proto.half_val.extend(np.float16([0.25, -2.0]).view(np.uint16).tolist())
    np.testing.assert_array_equal(wire.to_ndarray(proto), np.float16([0.25, -2.0]))
    proto.half_val.extend([0, 0])
    with pytest.raises(InputError, match="needs 2"):
        wire.to_ndarray(proto)


def test_rest_json_rows_columns_and_b64():
    specs = (TensorSpec("image_bytes", object, (None,)), TensorSpec("k", np.int32, (None, 2)))
    rows = [{"image_bytes": {"b64": "AAE="}, "k": [1, 2]}, {"image_bytes": {"b64": "/w=="}, "k": [3, 4]}]
    arrays = wire.rows_to_arrays(rows, specs)
    assert arrays["image_bytes"].tolist() == [b"\x00\x01", b"\xff"] and arrays["k"].dtype == np.int32
    assert wire.arrays_to_rows(arrays) == rows
    columns = wire.arrays_to_columns(arrays)
    assert columns == {"image_bytes": [{"b64": "AAE="}, {"b64": "/w=="}], "k": [[1, 2], [3, 4]]}
    assert wire.columns_to_arrays(columns, specs)["k"].tolist() == [[1, 2], [3, 4]]
    with pytest.raises(InputError, match="int32"):
        wire.columns_to_arrays({"k": [[1, "a"]]}, specs[1:])
    with pytest.raises(InputError, match="0-th dimension"):
        wire.arrays_to_rows({"a": np.zeros(2), "b": np.zeros(3)})


def test_signature_json_round_trips_specs():
    specs = (TensorSpec("x", np.float32, ("batch", 8, 8, None)), TensorSpec("ids", np.int64, (None,)))
    inputs, outputs = wire.specs_from_signature(wire.signature_json(specs, specs[:1]))
    assert inputs == specs and outputs == specs[:1]


def test_status_codes_follow_tf_serving():
    assert wire.HTTP_STATUS["DEADLINE_EXCEEDED"] == 504 and wire.HTTP_STATUS["RESOURCE_EXHAUSTED"] == 429
    assert isinstance(wire.error_for_code(wire.code_for_http(404), "m"), ModelLoadError)
    assert isinstance(wire.error_for_code(wire.code_for_http(503), "m"), Overloaded)
    assert wire.code_for_error(InputError("x")) == "INVALID_ARGUMENT"

"""TF Serving batching_parameters.txt: written from a BatchingConfig, parsed back with protobuf."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from kit.errors import ConfigError
from kit.serve.batching import BatchingConfig
from kit.tfserving import batching_parameters


def test_message_declares_tf_servings_fields_with_their_numbers_and_types():
    descriptor = batching_parameters.batching_parameters_class().DESCRIPTOR
    assert descriptor.full_name == "tensorflow.serving.BatchingParameters"
    fields = {f.name: f for f in descriptor.fields}
    assert {n: f.number for n, f in fields.items()} == {
        "max_batch_size": 1, "batch_timeout_micros": 2, "max_enqueued_batches": 3, "num_batch_threads": 4,
        "thread_pool_name": 5, "allowed_batch_sizes": 6, "pad_variable_length_inputs": 7}
    assert fields["max_batch_size"].message_type.full_name == "google.protobuf.Int64Value"
    assert fields["thread_pool_name"].message_type.full_name == "google.protobuf.StringValue"
    assert fields["allowed_batch_sizes"].is_repeated  # repeated int64
    assert fields["pad_variable_length_inputs"].type == fields["pad_variable_length_inputs"].TYPE_BOOL


def test_written_file_parses_back_to_the_same_config(tmp_path):
    config = BatchingConfig(max_batch_size=32, batch_timeout_micros=2500, max_enqueued_batches=4,
                            num_batch_threads=2, allowed_batch_sizes=(8, 16, 32), pad_variable_length_inputs=True,
                            thread_pool_name="mobilenet")
    path = batching_parameters.write(config, tmp_path / "batching_parameters.txt")
    text = path.read_text()
    assert "max_batch_size {\n  value: 32\n}" in text and "allowed_batch_sizes: 16" in text
    message = text_format.Parse(text, batching_parameters.batching_parameters_class()())
    assert message.batch_timeout_micros.value == 2500 and list(message.allowed_batch_sizes) == [8, 16, 32]
    assert batching_parameters.read(path) == config
    assert not [p for p in tmp_path.iterdir() if p.name != "batching_parameters.txt"]  # no temp left behind


def test_a_hand_written_tf_serving_file_is_read_and_validated(tmp_path):
    text = "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 0 }\nnum_batch_threads { value: 4 }\n"
    config = batching_parameters.parse_text(text, drain_on_close=False)
    assert (config.max_batch_size, config.batch_timeout_micros, config.num_batch_threads) == (16, 0, 4)
    assert config.max_enqueued_batches == BatchingConfig().max_enqueued_batches and not config.drain_on_close
    with pytest.raises(ConfigError, match="must equal max_batch_size"):
        batching_parameters.parse_text("max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n")
    with pytest.raises(ConfigError, match="not a valid"):
        batching_parameters.parse_text("max_batch_sise { value: 16 }")
    with pytest.raises(ConfigError, match="not found"):
        batching_parameters.read(tmp_path / "missing.txt")


def test_a_zero_timeout_survives_the_round_trip():
    config = BatchingConfig(max_batch_size=4, batch_timeout_micros=0)
    text = batching_parameters.to_text(config)
    assert "batch_timeout_micros {\n}" in text  # the wrapper is present with its default value 0
    assert batching_parameters.parse_text(text) == config

"""``path_size``/``ModelArtifact.size_bytes`` count an ONNX model's external-data files (issue 13)."""

from __future__ import annotations

from onnx_models import make_external_data_model

from kit.artifacts import ModelArtifact, path_size


def test_size_counts_external_data_beside_the_model(tmp_path):
    model = make_external_data_model(tmp_path / "ext.onnx", width=256)
    data = tmp_path / "ext.onnx.data"
    assert data.is_file()
    own = model.stat().st_size
    assert own < 256 * 256 * 4  # the graph alone: the weights are elsewhere
    assert path_size(model) == own + data.stat().st_size
    assert ModelArtifact.from_path(model).size_bytes == path_size(model) >= 256 * 256 * 4


def test_size_of_a_plain_file_or_a_missing_path(tmp_path):
    plain = tmp_path / "notes.onnx"
    plain.write_bytes(b"not onnx")
    assert path_size(plain) == 8 and path_size(tmp_path / "gone.onnx") == 0

import pytest

from kit.artifacts import ModelArtifact, atomic_output, detect_format, lineage_frame
from kit.errors import ModelLoadError


def test_detect_format(tmp_path, add_onnx):
    assert detect_format(add_onnx) == "onnx"
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"x")
    assert detect_format(tmp_path / "sm") == "savedmodel"
    assert detect_format("grpc://127.0.0.1:8500/m") == "tfserving"
    with pytest.raises(ModelLoadError, match="does not exist"):
        detect_format(tmp_path / "missing.onnx")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="expected a .onnx"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        detect_format(tmp_path)


def test_lineage_records_every_step(add_onnx, tmp_path):
    root = ModelArtifact.from_path(add_onnx, name="add")
    child = root.derive(add_onnx, "quantize_dynamic", params={"weight_type": "QInt8"})
    grandchild = child.derive(add_onnx, "optimize", params={"level": "all"}, metrics={"nodes": 1})
    assert [a.name for a in grandchild.lineage()] == ["add", "add-quantize_dynamic",
                                                      "add-quantize_dynamic-optimize"]
    assert grandchild.describe() == "add -> quantize_dynamic(weight_type=QInt8) -> optimize(level=all)"
    frame = lineage_frame([root, child, grandchild])
    assert frame["parent"].isna().iloc[0] and list(frame["parent"])[1:] == ["add", "add-quantize_dynamic"]
    assert frame["size_bytes"].iloc[0] == add_onnx.stat().st_size
    assert frame["metric_nodes"].iloc[2] == 1


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_atomic_output_replaces_a_directory(tmp_path):
    target = tmp_path / "sm"
    for content in (b"v1", b"v2"):
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "saved_model.pb").write_bytes(content)
    assert (target / "saved_model.pb").read_bytes() == b"v2"


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_writer(tmp_path):
    """A SIGKILL skips every ``finally``: the next writer of the same target removes what it left."""
    import subprocess
    import sys

    from kit.artifacts import atomic_output

    target = tmp_path / "model.int8.onnx"
    code = ("import os, sys\nfrom kit.artifacts import atomic_output\n"
            f"with atomic_output({str(target)!r}) as tmp:\n"
            "    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode != 0
    litter = [p for p in tmp_path.iterdir() if p.name.startswith(".model.int8.onnx.")]
    assert litter and not target.exists()
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["model.int8.onnx"]


def test_atomic_writes_are_readable_like_a_plain_open(tmp_path):
    """mkstemp's 0600 made a copied report folder's JSON unreadable to a web server."""
    import os

    from kit.artifacts import atomic_write_bytes

    plain = tmp_path / "plain.json"
    plain.write_bytes(b"{}")
    atomic_write_bytes(tmp_path / "atomic.json", b"{}")
    assert os.stat(tmp_path / "atomic.json").st_mode & 0o777 == os.stat(plain).st_mode & 0o777

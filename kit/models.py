"""One resolver from what a user types (a zoo name or a path) to a ``ModelArtifact`` in the format asked for.

Every notebook and ``kit report`` take one ``model`` parameter; this module is the one place that turns it
into an artifact, so a bad path fails the same way everywhere, before any long work starts::

    art = resolve_model("mobilenet_v2")                      # zoo name -> the ONNX build
    art = resolve_model("~/models/detector.onnx")            # weights may live in external data files
    art = resolve_model("user.keras", format="tflite")       # .keras -> SavedModel -> TFLite, cached
    resolve_model("det.onnx", format="savedmodel")           # FormatUnavailable: no ONNX -> TF converter

A notebook section that needs a format catches ``FormatUnavailable`` and shows ``skipped: <reason>``; the
rest of the notebook runs. ``available_formats`` answers the same question without converting anything.

Derived formats are cached under ``<kit cache>/derived`` keyed by the source's content digest and the
converter versions, so a second notebook on the same user model converts nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.artifacts import ModelArtifact, detect_format, file_digest, onnx_external_locations
from kit.errors import ConfigError, ConversionError, ModelLoadError, first_line

if TYPE_CHECKING:
    from kit.data import Dataset

log = logging.getLogger(__name__)

REQUESTABLE = ("onnx", "savedmodel", "tflite", "keras")
"""Formats ``resolve_model(..., format=)`` takes."""
DERIVE_VERSION = 1
"""Bump when a derivation changes what it writes, so old cache entries are not reused."""
_FILES = {"savedmodel": "savedmodel", "onnx": "model.onnx", "tflite": "model.tflite"}
_EXPECTED = "a zoo name, a .onnx, .tflite or .keras file, or a SavedModel folder"


class FormatUnavailable(ConfigError):
    """The kit cannot get this model in the format asked for; ``reason`` is one line a notebook shows as skipped."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_model(model: str | os.PathLike[str] | ModelArtifact, format: str | None = None) -> ModelArtifact:
    """The artifact for ``model`` (zoo name, path or artifact), in ``format`` when given.

    A string that is exactly a zoo model's name means the zoo (write ``./name`` for a folder of that name);
    a zoo model comes as ONNX unless ``format`` says otherwise. Raises ``ConfigError`` for a path that does not
    exist or is not a model, ``FormatUnavailable`` for a format the kit cannot derive.
    """
    if format is not None and format not in REQUESTABLE:
        raise ConfigError(f"unknown model format {format!r}; expected one of {REQUESTABLE}")
    if isinstance(model, ModelArtifact):
        art = model
    elif isinstance(model, (str, os.PathLike)):
        from kit.zoo import MODELS, get_model

        if isinstance(model, str) and model in MODELS:
            if format == "keras":
                raise FormatUnavailable(f"the zoo model {model} comes as savedmodel, onnx or tflite, not keras")
            return get_model(model, format=format or "onnx")
        art = open_model(model)
    else:
        raise ConfigError(f"model must be {_EXPECTED}, got {type(model).__name__}")
    if format is None or format == art.format:
        return art
    return _derive(art, format)


def open_model(path: str | os.PathLike[str]) -> ModelArtifact:
    """A source artifact for a model path, after checking the file really is a model of its kind."""
    text = str(path)
    if text.startswith(("grpc://", "grpcs://", "http://", "https://")):
        raise ConfigError(f"{text} is a TF Serving address, not a model file; expected {_EXPECTED}")
    p = Path(path).expanduser()
    if not p.exists():
        from kit.zoo import MODELS, RETIRED

        if text in RETIRED:  # an old zoo name: say what replaced it
            raise ConfigError(f"the zoo model {text!r} is retired: use {RETIRED[text]!r}; the zoo has {list(MODELS)}")
        hint = "" if os.sep in text or "." in p.name else f" and not a zoo model (the zoo has {list(MODELS)})"
        raise ConfigError(f"model path does not exist: {p}{hint}; expected {_EXPECTED}")
    try:
        fmt = detect_format(p)
    except ModelLoadError as exc:
        raise ConfigError(str(exc)) from exc
    {"onnx": _check_onnx, "tflite": _check_tflite, "keras": _check_keras}.get(fmt, lambda _: None)(p)
    return ModelArtifact(p, fmt, name=p.name if fmt == "savedmodel" else p.stem)


def _check_onnx(path: Path) -> None:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConfigError(f"{path} is not an ONNX model ({first_line(exc)}); expected an ONNX protobuf file") from exc
    if proto.ir_version <= 0 or not proto.graph.output:
        raise ConfigError(f"{path} is not an ONNX model (no IR version or no graph outputs); expected an ONNX "
                          f"protobuf file")
    missing = [f for f in onnx_external_locations(proto) if not (path.parent / f).is_file()]
    if missing:
        raise ConfigError(f"{path} keeps its weights in external data file(s) {missing}, missing from "
                          f"{path.parent}; keep the model's folder together")
    try:
        onnx.checker.check_model(str(path))  # by path: external data is checked without loading it
    except Exception as exc:  # noqa: BLE001 -- ONNX Runtime runs many models the checker finds fault with: say so, go on
        log.warning("onnx.checker finds fault with %s (%s); trying it anyway", path, first_line(exc))


def _check_tflite(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        raise ConfigError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier); expected a .tflite file "
                          f"written by the TFLite converter")


def _check_keras(path: Path) -> None:
    names = set(zipfile.ZipFile(path).namelist()) if zipfile.is_zipfile(path) else set()
    if "config.json" not in names:
        raise ConfigError(f"{path} is not a Keras archive (no config.json inside); expected a file saved by "
                          f"model.save('name.keras')")


def available_formats(model: str | os.PathLike[str] | ModelArtifact) -> dict[str, str | None]:
    """Each requestable format -> ``None`` when the kit can get the model in it, else the one-line reason.

    Converts nothing and, for a zoo name, builds nothing.
    """
    from kit.zoo import MODEL_FORMATS

    if isinstance(model, str) and model in MODEL_FORMATS:
        kinds = MODEL_FORMATS[model]
        return {f: None if f in kinds else f"the zoo model {model} comes as {' or '.join(kinds)} only, not {f}"
                for f in REQUESTABLE}
    art = model if isinstance(model, ModelArtifact) else open_model(model)
    zoo = _zoo_entry(art) is not None
    out: dict[str, str | None] = {}
    for target in REQUESTABLE:
        out[target] = None if target == art.format or (zoo and target != "keras") else _reason(art, target)
    return out


def _reason(art: ModelArtifact, target: str) -> str | None:
    if target == "keras":
        return f"{art.name} is a {art.format} model and the kit reads .keras files but does not write them"
    if art.format == "onnx":
        return (f"{art.name} is an ONNX model and the kit has no ONNX -> TensorFlow converter: {target} needs a "
                f"SavedModel or .keras source")
    if art.format == "tflite":
        return f"{art.name} is a TFLite flatbuffer, which cannot be converted to {target}: give its SavedModel source"
    if art.format not in ("savedmodel", "keras"):
        return f"{art.name} is a {art.format} model, which the kit cannot convert to {target}"
    needs = ["tensorflow"] + (["tf2onnx"] if target == "onnx" else [])
    missing = [p for p in needs if importlib.util.find_spec(p) is None]
    if missing:
        return f"converting {art.name} to {target} needs {', '.join(missing)}: pip install {' '.join(missing)}"
    return None


def content_digest(path: str | os.PathLike[str]) -> str:
    """A digest of a model's content: its file, its external data files, or every file of its folder."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    else:
        files = [p]
        if p.suffix.lower() == ".onnx":
            import onnx

            files += [p.parent / f for f in onnx_external_locations(onnx.load(str(p), load_external_data=False))]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode() + file_digest(f))
    return h.hexdigest()[:16]


def derived_root() -> Path:
    """``<kit cache>/derived``: beside the zoo, under ``$KIT_CACHE_DIR`` when set."""
    from kit.zoo import cache_root

    return cache_root().parent / "derived"


def _derive(art: ModelArtifact, target: str) -> ModelArtifact:
    """``art`` converted to ``target`` through the cache (``.keras`` goes through its SavedModel first)."""
    reason = available_formats(art)[target]
    if reason is not None:
        raise FormatUnavailable(reason)
    zoo = _zoo_entry(art)
    if zoo is not None:  # the zoo built every format at once: take the sibling file
        root, build = art.lineage()[0], json.loads((zoo / "manifest.json").read_text())["build"]
        if target == "savedmodel":
            return root
        return root.derive(zoo / _FILES[target], f"to_{target}", name=f"{root.name}-{target}", format=target,
                           params=build[target]["params"], metrics=build[target]["metrics"])
    source = _derive(art, "savedmodel") if art.format == "keras" and target != "savedmodel" else art
    from kit.zoo.cache import entry_key, get_or_build, library_versions

    root = art.lineage()[0]
    key = entry_key(f"{content_digest(root.path)}-{art.describe()}-{target}", {}, 0, DERIVE_VERSION)
    entry = derived_root() / f"{art.name}-{target}-{key}"
    filename = _FILES[target]

    def build(tmp: Path) -> dict[str, object]:
        log.info("converting %s to %s (one-time; cached in %s)", art.name, target, entry)
        made = _convert_in_child(source, target, tmp / filename)
        return {"source": str(art.path), **made, "versions": library_versions()}

    manifest = get_or_build(entry, (filename,), build)
    return source.derive(entry / filename, manifest["transform"], name=f"{art.name}-{target}", format=target,
                         params=manifest["params"], metrics=manifest["metrics"])


def _zoo_entry(art: ModelArtifact) -> Path | None:
    """The zoo cache entry ``art`` comes from, if it is a zoo model (every format sits side by side there)."""
    from kit.zoo import MODELS

    root = art.lineage()[0]
    entry = root.path.parent
    if root.name in MODELS and root.format == "savedmodel" and (entry / "manifest.json").is_file():
        return entry
    return None


def _convert_in_child(source: ModelArtifact, target: str, out: Path) -> dict[str, Any]:
    """Run one conversion in a child Python process, as the zoo's builds do.

    TensorFlow fixes its thread pools when it starts; converting in the notebook's own process would take
    that choice away from the TensorFlow engine created afterwards.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "kit.models", str(source.path), source.format, target, str(out)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        errors = [line.strip() for line in proc.stderr.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b.*:", line)]
        summary = (errors[-1] if errors else (proc.stderr.strip().splitlines() or ["no output"])[-1])[:600]
        summary = re.sub(r"^kit\.errors\.\w+: ", "", summary)  # the kit's own message already says what
        raise ConversionError(f"converting {source.name} ({source.format}) to {target} failed: {summary}")
    return json.loads(lines[-1][len("RESULT "):])


def _child_main(argv: list[str]) -> int:
    from kit import _quiet  # noqa: F401  (before TensorFlow is imported)
    from kit.optimize import convert

    path, fmt, target, out = argv
    source = ModelArtifact(Path(path), fmt)
    step = {"savedmodel": convert.keras_to_savedmodel, "onnx": convert.savedmodel_to_onnx,
            "tflite": convert.savedmodel_to_tflite}[target]
    made = step(source, Path(out))
    print("RESULT " + json.dumps({"transform": made.transform, "params": dict(made.params),
                                  "metrics": dict(made.metrics)}), flush=True)
    return 0


def model_data(model: str | os.PathLike[str] | ModelArtifact, data: str | os.PathLike[str] | None, specs: Any, *,
               samples: int = 64, split: str = "test", input_shapes: Mapping[str, Sequence[int]] | None = None,
               value_ranges: Mapping[str, Sequence[float]] | None = None, seed: int = 0) -> Dataset:
    """The inputs a notebook runs ``model`` on: the user's ``data``, else the zoo's, else synthetic.

    With no ``data`` a zoo model gets its realistic samples (the digits with labels, real sentences, rendered
    text lines), drawn from its ``split`` ("train" for calibration, "test" for evaluation) so the two never
    overlap; a user's model gets synthetic inputs from ``specs`` shaped by ``input_shapes`` and valued by
    ``value_ranges``, and its ``describe()`` says quality on them is agreement with float32, not accuracy.
    """
    from dataclasses import replace

    from kit.data import load_data

    if data:
        return load_data(data, specs, samples=samples, seed=seed)
    name = model.lineage()[0].name if isinstance(model, ModelArtifact) else str(model)
    from kit.zoo import MODELS, zoo_samples

    if isinstance(model, str) and name in MODELS:
        feeds, labels = zoo_samples(name, samples, seed=seed, split=split)
        mapping = dict(feeds) if labels is None else {**feeds, "labels": labels}
        ds = load_data(mapping, specs, seed=seed)
        return replace(ds, source=f"the zoo's {split} samples for {name}")
    return load_data(None, specs, input_shapes=input_shapes, value_ranges=value_ranges, samples=samples, seed=seed)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))

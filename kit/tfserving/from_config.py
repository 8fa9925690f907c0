"""``kit serve --model-config-file models.config``: serve a folder as TensorFlow Serving would.

Each ``model_config_list`` entry becomes a ``ModelRegistry`` on its ``base_path`` with its
version policy and labels; each loaded version runs its ``assets.extra`` warm-up requests
(as ``--enable_model_warmup`` does) and, with batching parameters, sits behind a
``DynamicBatcher`` configured from ``batching_parameters.txt`` (as ``--enable_batching
--batching_parameters_file`` does). A version whose files do not match the entry's
``model_platform`` (an ONNX file under ``tensorflow``) fails to load, as it would in TF Serving,
and a model left with no loadable version is a ``ConfigError`` at start, not a silent gap.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kit.engines.base import Predictor
from kit.errors import ConfigError, ModelLoadError
from kit.tfserving.modelconfig import VersionPolicy, import_config_pb2
from kit.tfserving.sources import RegistrySource
from kit.tfserving.versions import PLATFORMS, ModelRegistry, platform_of

log = logging.getLogger(__name__)

BATCHING_FILE = "batching_parameters.txt"


def _run_warmup(version_dir: Path, predictor: Predictor) -> int:
    """Run the version's TF Serving warm-up records through ``predictor``; how many ran."""
    from kit.tfserving.warmup import WARMUP_DIR, WARMUP_FILE, read_tfserving_warmup

    if not (version_dir / WARMUP_DIR / WARMUP_FILE).is_file():
        return 0
    from kit._quiet import import_tensorflow

    tf = import_tensorflow()
    requests = read_tfserving_warmup(version_dir)
    for request in requests:
        predictor.predict({k: tf.make_ndarray(v) for k, v in request.inputs.items()})
    return len(requests)


def _loader(platform: str, batching: Any, warmup: bool):
    from kit.engines.registry import create_engine

    def load(path: Path) -> Predictor:
        version_dir = path if path.is_dir() else path.parent
        found = platform_of(version_dir)
        if platform and found != platform:
            raise ModelLoadError(f"{version_dir} holds a {found} model, but models.config says platform "
                                 f"{platform!r}")
        predictor: Predictor = create_engine(path)
        try:
            if warmup:
                count = _run_warmup(version_dir, predictor)
                if count:
                    log.info("%s: ran %d warm-up requests", version_dir, count)
            if batching is not None:
                from kit.serve.batching import DynamicBatcher

                predictor = DynamicBatcher(predictor, batching)
        except BaseException:
            predictor.close()
            raise
        return predictor

    return load


def registries_from_config(path: str | os.PathLike[str], batching_parameters_file: str | os.PathLike[str] | None = None,
                           *, enable_batching: bool | None = None, warmup: bool = True) -> list[ModelRegistry]:
    """One ``ModelRegistry`` per ``models.config`` entry, loaded, with its labels set.

    ``batching_parameters_file`` defaults to ``batching_parameters.txt`` beside the config when
    it exists (``kit export`` writes it there only when the model batches); ``enable_batching``
    False turns batching off even then, True requires the file.
    """
    from google.protobuf import text_format

    from kit.tfserving import batching_parameters

    config_path = Path(path)
    pb2 = import_config_pb2()
    server = pb2.ModelServerConfig()
    try:
        text_format.Parse(config_path.read_text(), server)
    except OSError as exc:
        raise ConfigError(f"cannot read models.config {config_path}: {exc.strerror}") from exc
    except text_format.ParseError as exc:
        raise ConfigError(f"{config_path} is not a TensorFlow Serving models.config: {exc}") from exc
    entries = list(server.model_config_list.config)
    if not entries:
        raise ConfigError(f"{config_path} lists no models (model_config_list is empty)")
    if batching_parameters_file is None and enable_batching is not False:
        beside = config_path.parent / BATCHING_FILE
        batching_parameters_file = beside if beside.is_file() else None
    if enable_batching and batching_parameters_file is None:
        raise ConfigError(f"--enable-batching needs --batching-parameters-file (none beside {config_path})")
    batching = (batching_parameters.read(batching_parameters_file)
                if batching_parameters_file is not None and enable_batching is not False else None)
    registries: list[ModelRegistry] = []
    try:
        for entry in entries:
            platform = entry.model_platform or "tensorflow"
            if platform not in PLATFORMS.values():
                raise ConfigError(f"model {entry.name!r}: platform {platform!r} is none the kit serves "
                                  f"({sorted(set(PLATFORMS.values()))})")
            base = Path(entry.base_path)
            if not base.is_absolute():
                base = config_path.parent / base
            if not base.is_dir():
                raise ConfigError(f"model {entry.name!r}: base_path {base} is not a folder")
            registry = ModelRegistry(base, entry.name, VersionPolicy.from_proto(entry.model_version_policy),
                                     loader=_loader(platform, batching, warmup), platform=platform)
            registries.append(registry)
            if not registry.served_versions:
                failures = "; ".join(f"v{f['version']}: {f['error']}" for f in registry.load_failures)
                raise ConfigError(f"model {entry.name!r} has no loadable version under {base}"
                                  f"{' (' + failures + ')' if failures else ''}")
            for label, version in sorted(entry.version_labels.items()):
                registry.set_label(label, version)
    except BaseException:
        for registry in registries:
            registry.close()
        raise
    return registries


def server_from_config(path: str | os.PathLike[str], batching_parameters_file: str | os.PathLike[str] | None = None,
                       *, enable_batching: bool | None = None, **server_config: Any):
    """A ``ModelServer`` (not started) over ``registries_from_config``; it closes them when stopped."""
    from kit.tfserving.server import ModelServer

    registries = registries_from_config(path, batching_parameters_file, enable_batching=enable_batching)
    try:
        return ModelServer(RegistrySource(registries), close_models=True, **server_config)
    except BaseException:
        for registry in registries:
            registry.close()
        raise

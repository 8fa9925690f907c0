"""What the report index takes from an executed notebook: its title and its key plot, as a thumbnail.

The key plot is the first ``image/png`` output of a cell tagged ``key-plot``; without that tag, the
largest PNG the notebook drew (by pixel area, the earliest among equals), which in these notebooks is
the figure the findings talk about rather than a small dashboard or histogram. The thumbnail is that
PNG scaled down to at most ``THUMB_WIDTH`` pixels wide, written beside the report as a plain file,
so the index stays small and shows it without JavaScript.
"""

from __future__ import annotations

import base64
import io
import logging
import struct
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KEY_PLOT_TAG = "key-plot"
THUMB_WIDTH = 320
THUMBS_DIR = "thumbs"


def _png_bytes(data: Any) -> bytes:
    return base64.b64decode(data if isinstance(data, str) else "".join(data))


def _png_area(png: bytes) -> int:
    """Width x height from the PNG header (IHDR), without decoding the image; 0 when unreadable."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n":
        return 0
    width, height = struct.unpack(">II", png[16:24])
    return width * height


def key_plot(nb: Any) -> bytes | None:
    """The PNG bytes of ``nb``'s key plot (see the module's docstring), or None when it drew none."""
    best: tuple[int, bytes] | None = None
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tagged = KEY_PLOT_TAG in (cell.get("metadata", {}).get("tags") or [])
        for output in cell.get("outputs", []):
            data = (output.get("data") or {}).get("image/png")
            if not data:
                continue
            png = _png_bytes(data)
            if tagged:
                return png
            area = _png_area(png)
            if best is None or area > best[0]:
                best = (area, png)
    return None if best is None else best[1]


def title(nb: Any, default: str) -> str:
    """The first markdown heading of ``nb`` (without its ``#``), or ``default``."""
    for cell in nb.cells:
        if cell.get("cell_type") != "markdown":
            continue
        for line in cell.get("source", "").splitlines():
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                if text:
                    return text
    return default


def write_thumbnail(png: bytes, target: Path, width: int = THUMB_WIDTH) -> Path:
    """``png`` scaled down to at most ``width`` pixels wide (never up), saved as ``target``."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        if image.width > width:
            height = max(1, round(image.height * width / image.width))
            image = image.resize((width, height), Image.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="PNG", optimize=True)
    return target


def thumbnail_for(executed: Path, out_dir: Path) -> tuple[str | None, str]:
    """The thumbnail of an executed notebook written under ``out_dir/thumbs/`` (its path relative to
    ``out_dir``, or None when it drew no PNG), and the notebook's title."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    name = title(nb, executed.stem)
    png = key_plot(nb)
    target = out_dir / THUMBS_DIR / f"{executed.stem}.png"
    target.unlink(missing_ok=True)  # never a previous run's plot beside this run's page
    if png is None:
        return None, name
    try:
        write_thumbnail(png, target)
    except Exception as exc:  # an unreadable image costs the thumbnail, never the run
        log.warning("no thumbnail for %s: %s", executed.name, exc)
        return None, name
    return target.relative_to(out_dir).as_posix(), name

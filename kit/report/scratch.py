"""A notebook's scratch folder: kept while its kernel lives, removed when the kernel exits.

Notebooks 01-03, 08 and 09 write the variants, caches and registries they study into a folder of
their own (hundreds of MB for a real model). A plain ``tempfile.mkdtemp`` outlives the run, so
every ``kit report`` left another copy of them in the temporary folder until the disk filled up.
This folder lives exactly as long as the Python process that asked for it: a researcher can still
open the files after Run All, and papermill's kernel shutdown (or closing the notebook) removes it.
Set ``KIT_KEEP_SCRATCH=1`` to keep it (the path is logged), for looking into a failed run.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
KEEP_ENV = "KIT_KEEP_SCRATCH"


def scratch_folder(prefix: str) -> Path:
    """A new empty folder named ``<prefix>...`` in the temporary folder, removed at interpreter exit.

    A kernel that is killed rather than shut down cannot run exit handlers: its folder stays, as
    any process's temporary files do.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.environ.get(KEEP_ENV, "").strip() not in ("", "0"):
        log.warning("%s is set: %s stays after this kernel exits", KEEP_ENV, folder)
    else:
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder

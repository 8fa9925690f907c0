"""Silence TensorFlow's and ONNX Runtime's own log noise unless the user asked for it.

The environment variables must be set before TensorFlow is first imported (its C++
logging reads them once). Some lines (oneDNN, CUDA stubs) are written by absl before its
logging is initialised and ignore every variable, so ``import_tensorflow`` also points
file descriptor 2 at /dev/null for the duration of the import. A user who sets these
variables keeps their own values; ``KIT_VERBOSE_RUNTIMES=1`` keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

for _key, _value in {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}.items():
    os.environ.setdefault(_key, _value)


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Point fd 2 at /dev/null (C++ writers included) while the block runs."""
    if os.environ.get("KIT_VERBOSE_RUNTIMES"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some embedded shells)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Import TensorFlow quietly, or raise MissingDependencyError naming the package."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    from kit.errors import MissingDependencyError

    try:
        with silenced_stderr():
            import tensorflow as tf
    except ImportError as exc:
        raise MissingDependencyError("tensorflow", "This TensorFlow feature") from exc
    tf.get_logger().setLevel("ERROR")
    return tf

"""Silence TensorFlow's and ONNX Runtime's own log noise unless the user asked for it.

Set before TensorFlow is first imported (its C++ logging reads the environment once).
A user who sets these variables keeps their own values.
"""

from __future__ import annotations

import os

for _key, _value in {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}.items():
    os.environ.setdefault(_key, _value)

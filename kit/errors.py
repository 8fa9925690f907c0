"""The kit's error tree.

Every error the kit raises on purpose is a ``KitError``; third-party exceptions are
translated at the boundary (``raise InferenceError(...) from exc``) so that no raw C++
trace reaches a user and callers can catch by meaning rather than by library::

    KitError
    ├── ConfigError (ValueError)          a bad parameter, caught before any model loads
    ├── MissingDependencyError (ImportError)  names the package to install
    ├── ModelLoadError                    missing path, not a model, unsupported format
    ├── InputError (ValueError)           wrong input name/dtype/shape; lists what is expected
    ├── ProviderUnavailableError          a requested execution provider did not load
    ├── ConversionError                   a conversion or its agreement check failed
    ├── QuantizationError                 a model cannot be quantized as given
    ├── InferenceError                    the engine failed while running
    └── ServingError                      raised by serving wrappers
        ├── Overloaded                    the queue is full; rejected at once
        ├── DeadlineExceeded              the request ran out of time
        ├── CircuitOpen                   the breaker refuses calls for now
        └── Closed                        the predictor was closed
"""

from __future__ import annotations

import re


class KitError(Exception):
    """Root of every error the kit raises on purpose."""


class ConfigError(KitError, ValueError):
    """A configuration value is invalid; raised before any model is loaded."""


class MissingDependencyError(KitError, ImportError):
    """An optional package is missing; the message names what to install."""

    def __init__(self, package: str, purpose: str, extra: str | None = None) -> None:
        install = f"pip install {package}" if extra is None else f"pip install 'kit[{extra}]'"
        super().__init__(f"{purpose} needs the package '{package}', which is not installed: {install}")
        self.package = package


class ModelLoadError(KitError):
    """A model file is missing, unreadable or not in a format the engine takes."""


class InputError(KitError, ValueError):
    """Feeds do not match the model's inputs; the message lists what the model expects."""


class ProviderUnavailableError(KitError):
    """An execution provider was requested but did not load."""


class ConversionError(KitError):
    """A model conversion failed or its outputs disagree with the source model."""


class QuantizationError(KitError):
    """A model cannot be quantized as given; the message says what to do instead."""


class InferenceError(KitError):
    """The engine failed while running a request."""


class ServingError(KitError):
    """Base class for errors raised by serving wrappers (batcher, router, breaker)."""


class Overloaded(ServingError):
    """The request was rejected at once because a queue is full."""


class DeadlineExceeded(ServingError):
    """The request did not complete before its deadline."""


class CircuitOpen(ServingError):
    """The circuit breaker is open and refuses calls until its cool-down ends."""


class Closed(ServingError):
    """The predictor has been closed and takes no more requests."""


_CPP_LOCATION = re.compile(r"/[^\s:]*(?:onnxruntime_src|/core/)[^\s:]*:\d+\s*")
_CPP_SIGNATURE = re.compile(r"(?:\b[\w&*<>]+ )?(?:[\w~<>]+::)+[\w~<>]+\([^()]*\)\s*")


def first_line(exc: BaseException) -> str:
    """The first meaningful line of a third-party error, without C++ file names or signatures.

    Every translation at a library boundary uses it, so no C++ trace reaches a user.
    """
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = _CPP_SIGNATURE.sub("", _CPP_LOCATION.sub("", lines[0]))
    if "Unsupported model IR version" in text:
        text += (" (the file was saved by a newer onnx than this ONNX Runtime reads: save it with "
                 "a lower ir_version, e.g. model.ir_version = 10)")
    return text[:500]

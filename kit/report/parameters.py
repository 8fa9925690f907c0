"""Every notebook's parameters as one typed config, checked before any model loads.

A notebook's first code cell holds annotated literals (papermill reads and overrides them);
its second cell is ``params = kit.report.parameters.from_globals("01_quantization", globals())``,
which builds that notebook's class below and checks every value, raising ``ConfigError``
naming the parameter and what was expected. So the checks live here, tested, not in notebooks,
and ``tests/report/test_parameters.py`` checks that each class's fields are exactly the
names in its notebook's cell.

One name per idea across every notebook, config and the CLI: ``model`` (a zoo name or a path),
``intra_op_num_threads``/``inter_op_num_threads`` (ONNX Runtime's names; TFLite's interpreter
threads are its intra-op threads), ``graph_optimization_level``, ``batch_timeout_micros``
(TF Serving's), ``accuracy_budget`` in percentage points, ``min_duration_s`` for the measuring
time per point (MLPerf LoadGen's ``min_duration``), ``requests`` for a request count, ``rounds``
for interleaved rounds, ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from kit.config import require_int
from kit.errors import ConfigError

Check = Callable[[str, Any], None]
P = TypeVar("P", bound="NotebookParameters")


# ------------------------------------------------------------------ value checks (name, value) -> None

def positive_int(name: str, value: Any) -> None:
    require_int(name, value, 1)


def non_negative_int(name: str, value: Any) -> None:
    require_int(name, value, 0)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive_number(name: str, value: Any) -> None:
    if _number(name, value) <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def non_negative_number(name: str, value: Any) -> None:
    if _number(name, value) < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


def between(low: float, high: float) -> Check:
    def check(name: str, value: Any) -> None:
        if not low <= _number(name, value) <= high:
            raise ConfigError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
    return check


def int_between(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> None:
        require_int(name, value, low)
        if value > high:
            raise ConfigError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return check


def one_of(*choices: str) -> Check:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")
    return check


def text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")


def non_empty_text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")


def flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")


def _is_list(value: Any) -> bool:
    """A list or tuple (a string is a sequence too, but never a list of values here)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def list_of(check: Check, *, allow_empty: bool = False, unique: bool = True) -> Check:
    """A list (or tuple) whose every item passes ``check``; the config stores it as a tuple."""
    def check_list(name: str, value: Any) -> None:
        if not _is_list(value):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        if not value and not allow_empty:
            raise ConfigError(f"{name} must not be empty")
        for i, item in enumerate(value):
            check(f"{name}[{i}]", item)
        if unique and len({repr(v) for v in value}) != len(value):
            raise ConfigError(f"{name} must not repeat a value, got {list(value)!r}")
    return check_list


def mapping(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")


def shapes(name: str, value: Any) -> None:
    """``{"input": [sizes...]}``: the size of every dimension of an input, for synthetic inputs."""
    mapping(name, value)
    for key, dims in value.items():
        list_of(positive_int, unique=False)(f"{name}[{key!r}]", dims)


def ranges(name: str, value: Any) -> None:
    """``{"input": [low, high]}``: the range synthetic values of an input are drawn from."""
    mapping(name, value)
    for key, bounds in value.items():
        if not _is_list(bounds) or len(bounds) != 2:
            raise ConfigError(f"{name}[{key!r}] must be [low, high], got {bounds!r}")
        low, high = (_number(f"{name}[{key!r}]", b) for b in bounds)
        if low > high:
            raise ConfigError(f"{name}[{key!r}] must have low <= high, got {bounds!r}")


def param(check: Check, help: str) -> Any:
    """A notebook parameter: its check and its one-line help (the same text as the notebook's comment)."""
    return field(metadata={"check": check, "help": help})


# ------------------------------------------------------------------ the base

@dataclass(frozen=True)
class NotebookParameters:
    """Fields are a notebook's parameter names; ``__post_init__`` runs every field's check."""

    notebook: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            f.metadata["check"](f.name, value)
            if isinstance(value, list):  # frozen and hashable: lists become tuples
                object.__setattr__(self, f.name, tuple(value))
        self.check_together()

    def check_together(self) -> None:
        """Checks that involve several parameters (a low bound below a high one, ...)."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_values(cls: type[P], values: Mapping[str, Any]) -> P:
        missing = [n for n in cls.names() if n not in values]
        if missing:
            raise ConfigError(f"{cls.notebook} needs the parameters {missing}")
        return cls(**{n: values[n] for n in cls.names()})

    def to_dict(self) -> dict[str, Any]:
        return {n: list(v) if isinstance(v, tuple) else v for n, v in dataclasses.asdict(self).items()}


_REGISTRY: dict[str, type[NotebookParameters]] = {}


def register(cls: type[P]) -> type[P]:
    _REGISTRY[cls.notebook] = cls
    return cls


def parameters_class(notebook: str) -> type[NotebookParameters]:
    import kit.report.notebook_parameters  # noqa: F401  (registers every notebook's class)

    try:
        return _REGISTRY[notebook]
    except KeyError:
        raise ConfigError(f"no parameters are declared for notebook {notebook!r}; known: {sorted(_REGISTRY)}") from None


def from_globals(notebook: str, namespace: Mapping[str, Any]) -> NotebookParameters:
    """The notebook's checked parameters, from the names its ``parameters`` cell defined."""
    return parameters_class(notebook).from_values(namespace)


def registered() -> dict[str, type[NotebookParameters]]:
    import kit.report.notebook_parameters  # noqa: F401  (registers every notebook's class)

    return dict(_REGISTRY)


# ------------------------------------------------------------------ shared fields, one help text each

MODEL = "zoo model name or path to a model (.onnx, SavedModel folder, .tflite, .keras)"
DATA = ("inputs: a .npz named after the model's inputs (optional labels) or module:function; "
        "'' uses the zoo's samples or synthetic inputs")
INPUT_SHAPES = "sizes of dynamic dimensions for synthetic inputs, e.g. {'x': [1, 3, 640, 640]}"
VALUE_RANGES = "[low, high] of synthetic values per input, e.g. {'sr': [16000, 16000]}"
ROUNDS = "interleaved measurement rounds (A B C A B C ...)"
MIN_DURATION = "measuring time per point, s, pooled over the rounds"
BATCH_SIZES = "batch sizes to measure"
MONITOR_REQUESTS = "requests sent through the monitored stacks"
SEED = "seed of every random choice"

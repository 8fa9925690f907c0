"""Tensor specs: what a model expects, checks of feeds against it, and synthetic inputs.

Engines describe their inputs and outputs with ``TensorSpec`` so that a load generator,
a cache or a router can build valid requests for any model, and so that a bad request
gets a message listing exactly what the model expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kit.errors import InputError

Dim = int | str | None
"""A dimension: a fixed size, a symbolic name (``"batch"``) or unknown (``None``)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one model input or output; symbolic dims are str/None."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(self.shape))

    def _dims(self) -> str:
        return ", ".join("?" if d is None else str(d) for d in self.shape)

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype.name}[{self._dims()}]"

    def concrete_shape(self, batch_size: int = 1, symbols: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The shape with the leading dynamic dim set to ``batch_size`` and others resolved.

        Named symbols take their value from ``symbols``; any other unknown dimension
        (after the first) falls back to 1, which every model accepts for a sequence axis.
        """
        symbols = dict(symbols or {})
        out: list[int] = []
        for axis, dim in enumerate(self.shape):
            if isinstance(dim, int) and dim >= 0:
                out.append(dim)
            elif isinstance(dim, str) and dim in symbols:
                out.append(int(symbols[dim]))
            elif axis == 0:
                out.append(batch_size)
            else:
                out.append(1)
        return tuple(out)

    def matches(self, array: np.ndarray) -> str | None:
        """Why ``array`` does not fit this spec, or ``None`` when it does."""
        if array.dtype != self.dtype:
            return f"dtype {array.dtype.name}, expected {self.dtype.name}"
        if len(array.shape) != len(self.shape):
            return f"rank {array.ndim} (shape {tuple(array.shape)}), expected rank {len(self.shape)}"
        for axis, (got, want) in enumerate(zip(array.shape, self.shape)):
            if isinstance(want, int) and want >= 0 and got != want:
                return f"shape {tuple(array.shape)}, expected {self.shape_str()} (axis {axis})"
        return None

    def shape_str(self) -> str:
        return f"({self._dims()})"


def describe(specs: Sequence[TensorSpec]) -> str:
    """One line listing every spec, for error messages."""
    return "; ".join(str(s) for s in specs)


def check_feeds(specs: Sequence[TensorSpec], feeds: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Return ``feeds`` as arrays, or raise ``InputError`` naming what the model expects.

    Engines call this on their slow path only (after the runtime refused a request, or
    before a remote call), so the fast path pays nothing for it.
    """
    if not isinstance(feeds, Mapping):
        raise InputError(f"feeds must be a mapping of input name to array, got {type(feeds).__name__}; "
                         f"the model expects {describe(specs)}")
    expected = {s.name: s for s in specs}
    missing = [n for n in expected if n not in feeds]
    unknown = [n for n in feeds if n not in expected]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if unknown:
            parts.append(f"unknown {unknown}")
        raise InputError(f"input names do not match ({', '.join(parts)}); the model expects {describe(specs)}")
    arrays: dict[str, np.ndarray] = {}
    for name, spec in expected.items():
        value = feeds[name]
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        problem = spec.matches(array)
        if problem:
            raise InputError(f"input '{name}' has {problem}; the model expects {describe(specs)}")
        arrays[name] = array
    return arrays


def synthetic_feeds(specs: Sequence[TensorSpec], batch_size: int = 1, seed: int = 0,
                    symbols: Mapping[str, int] | None = None, int_high: int = 100) -> dict[str, np.ndarray]:
    """Random inputs that satisfy ``specs``: normals for floats, ``[0, int_high)`` for ints."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = spec.concrete_shape(batch_size, symbols)
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, int_high, size=shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise InputError(f"cannot synthesize inputs of dtype {spec.dtype} for '{spec.name}'")
    return feeds


def batch_size_of(feeds: Mapping[str, np.ndarray]) -> int:
    """Leading dimension shared by every feed (1 for scalars)."""
    sizes = {int(a.shape[0]) if np.ndim(a) else 1 for a in feeds.values()}
    if len(sizes) != 1:
        raise InputError(f"inputs disagree on the batch dimension: {sorted(sizes)}")
    return sizes.pop()

"""Tensor specs: what a model expects, checks of feeds against it, and synthetic inputs.

Engines describe their inputs and outputs with ``TensorSpec`` so that a load generator,
a cache or a router can build valid requests for any model, and so that a bad request
gets a message listing exactly what the model expects.

Which axis of each input is the batch (``batch_axes``; a recurrent state's is axis 1, a sample
rate has none) and what size an unresolved dimension takes (``resolve_shapes``) are decided here
once, so a measurement, a batcher and a self-check cannot disagree about them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kit.errors import ConfigError, InputError, first_line

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
        # some exporters name every unknown dim "?": that is no name, and must not tie unrelated axes together
        object.__setattr__(self, "shape", tuple(None if d in ("", "?") else d for d in self.shape))

    def _dims(self) -> str:
        return ", ".join("?" if d is None else str(d) for d in self.shape)

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype.name}[{self._dims()}]"

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
    """Return ``feeds`` as native-order arrays, or raise ``InputError`` naming what the model expects.

    The same rules for every engine: an array in non-native byte order (``">f4"``) is converted to native
    order (same values); a nested list or a Python scalar is converted to the spec's dtype when that is exact
    (ints to any int or float dtype that holds them, floats to any float dtype, bools to bool), else refused;
    an empty batch (0 rows along an input's batch axis) is refused. Engines call this on their slow path (or
    when ``fast_path_ok`` says a request needs it), so well-formed requests pay nothing for it.
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
        array = value if isinstance(value, np.ndarray) else _from_python(name, spec, value, specs)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))  # same values; the runtimes read native order
        problem = spec.matches(array)
        if problem:
            raise InputError(f"input '{name}' has {problem}; the model expects {describe(specs)}")
        arrays[name] = array
    axes = _cached_axes(tuple(specs))
    empty = [f"'{n}' has 0 rows on axis {a} {arrays[n].shape}" for n, a in axes.items()
             if a is not None and arrays[n].ndim > a and arrays[n].shape[a] == 0]
    if empty:
        raise InputError(f"empty batch: {', '.join(empty)}; send at least one row (the model expects "
                         f"{describe(specs)})")
    return arrays


def _from_python(name: str, spec: TensorSpec, value: object, specs: Sequence[TensorSpec]) -> np.ndarray:
    """A nested list or scalar as an array of ``spec.dtype``, when the conversion is exact."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise InputError(f"input '{name}' is not a rectangular array ({first_line(exc)}); the model expects "
                         f"{describe(specs)}") from exc
    if array.dtype == spec.dtype:
        return array
    got, want = array.dtype.kind, spec.dtype.kind
    exact = (got == want == "b") or (got == want == "f") or \
        (got in "iu" and want in "iuf" and array.size and
         np.array_equal(array.astype(spec.dtype).astype(array.dtype), array)) or \
        (got in "iu" and want in "iuf" and not array.size)
    if not exact:
        raise InputError(f"input '{name}' is a {type(value).__name__} of {array.dtype.name} values that do not "
                         f"convert exactly to {spec.dtype.name}; pass a numpy array of {spec.dtype.name} "
                         f"(the model expects {describe(specs)})")
    return array.astype(spec.dtype)


def fast_path_ok(feeds: object, names: frozenset[str] | set[str]) -> bool:
    """Whether ``feeds`` can go to a runtime as is: a dict of exactly ``names`` holding non-empty native arrays.

    Cheap (a microsecond or so): engines whose runtime would silently misread a request (byte order, an empty
    batch) or log its own error line (a missing input) call ``check_feeds`` first when this says no.
    """
    if type(feeds) is not dict or feeds.keys() != names:
        return False
    for array in feeds.values():
        if type(array) is not np.ndarray or not array.dtype.isnative or not array.size:
            return False
    return True


# --- the batch axis --------------------------------------------------------------------------------------
#
# Real models do not all batch along axis 0: a recurrent state is ``[2, batch, 128]``, a sample rate is an
# int64 scalar, an export with a fixed ``[1, 3, 224, 224]`` takes one image only. Every measurement that
# counts samples, and every batcher that concatenates requests, asks ``batch_axes`` instead of assuming.

def _dynamic(dim: Dim) -> bool:
    return not (isinstance(dim, int) and dim >= 0)


def _batch_like(symbol: str) -> bool:
    low = symbol.lower()
    return "batch" in low or low in ("n", "b", "bs")


def batch_axes(specs: Sequence[TensorSpec], declared: Mapping[str, int | None] | None = None) -> dict[str, int | None]:
    """The batch axis of each input, or ``None`` for inputs that have none (scalars, fixed sizes).

    The batch symbol is a batch-like symbolic name (``batch``, ``batch_size``, ``N``...) or else the most common
    symbol on axis 0. An input carrying that symbol batches along that axis (a state ``[2, batch, 128]``:
    axis 1); otherwise a dynamic axis 0 is the batch axis; an input with a fixed axis 0 above 1 and exactly one
    unnamed dynamic axis (a state ``[2, ?, 128]``) batches along that one. A fixed axis 0 of 1 is a model
    exported for batch 1: no batch axis. ``declared`` overrides the guess per input.
    """
    names = [s.name for s in specs]
    declared = dict(declared or {})
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise ConfigError(f"batch axes declared for unknown input(s) {unknown}; the model expects {describe(specs)}")
    symbols = {d for s in specs for d in s.shape if isinstance(d, str) and _batch_like(d)}
    leading = [s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], str)]
    if not symbols and leading:
        symbols = {max(leading, key=leading.count)}
    axes: dict[str, int | None] = {}
    for spec in specs:
        if spec.name in declared:
            axis = declared[spec.name]
            if axis is not None and not (isinstance(axis, int) and 0 <= axis < len(spec.shape)):
                raise ConfigError(f"batch axis {axis!r} declared for '{spec.name}' is not an axis of {spec}")
            axes[spec.name] = axis
            continue
        named = [i for i, d in enumerate(spec.shape) if isinstance(d, str) and d in symbols]
        unnamed = [i for i, d in enumerate(spec.shape) if d is None]
        if named:
            axes[spec.name] = named[0]
        elif spec.shape and _dynamic(spec.shape[0]):
            axes[spec.name] = 0
        elif spec.shape and spec.shape[0] != 1 and len(unnamed) == 1 and \
                sum(_dynamic(d) for d in spec.shape) == 1:
            axes[spec.name] = unnamed[0]
        else:
            axes[spec.name] = None
    return axes


@functools.lru_cache(maxsize=256)
def _cached_axes(specs: tuple[TensorSpec, ...]) -> dict[str, int | None]:
    return batch_axes(specs)


def output_batch_axes(input_specs: Sequence[TensorSpec], output_specs: Sequence[TensorSpec],
                      feeds: Mapping[str, object] | None = None, outputs: Mapping[str, object] | None = None
                      ) -> dict[str, int | None]:
    """The batch axis of each output: where it carries the inputs' batch symbol, else axis 0 (``None`` for a scalar).

    A recurrent model's state output ``[2, batch, 128]`` batches along axis 1 like its state input. Exporters
    often leave an output's dims unnamed (Silero VAD's ``stateN`` is ``[?, ?, ?]``): given the ``feeds`` sent and
    the ``outputs`` they gave, an output without the batch symbol that has exactly the shape of an input
    batched along another axis than 0 takes that input's axis.
    """
    axes = _cached_axes(tuple(input_specs))
    symbols = {s.shape[a] for s in input_specs for a in [axes[s.name]] if a is not None and isinstance(s.shape[a], str)}
    by_name = {s.name: s for s in output_specs}
    names = list(outputs) if outputs is not None else list(by_name)
    shaped = [(tuple(np.shape(v)), axes[n]) for n, v in (feeds or {}).items() if axes.get(n)]  # axis not None/0
    out: dict[str, int | None] = {}
    for name in names:
        spec = by_name.get(name)
        named = [i for i, d in enumerate(spec.shape) if isinstance(d, str) and d in symbols] if spec else []
        if named:
            out[name] = named[0]
            continue
        if outputs is not None:
            shape = tuple(np.shape(outputs[name]))
            same = {a for s, a in shaped if s == shape}
            if len(same) == 1:
                out[name] = same.pop()
                continue
            out[name] = 0 if shape else None
        else:
            out[name] = 0 if spec is None or spec.shape else None
    return out


def supports_batching(specs: Sequence[TensorSpec]) -> tuple[bool, str]:
    """Whether requests can be merged into larger batches, and a one-line reason a report can show."""
    axes = batch_axes(specs)
    batched = [f"{n} axis {a}" for n, a in axes.items() if a is not None]
    if not batched:
        return False, (f"no input has a dynamic batch dimension ({describe(specs)}): the model takes a fixed batch "
                       f"size, so batching does not apply")
    shared = [n for n, a in axes.items() if a is None]
    note = f"; {', '.join(shared)} must be equal in requests batched together" if shared else ""
    return True, f"batches along {', '.join(batched)}{note}"


def batch_size_of(feeds: Mapping[str, object], specs: Sequence[TensorSpec] | None = None, *,
                  strict: bool = True) -> int:
    """How many samples ``feeds`` holds: the one batch-size helper of the kit.

    With ``specs``, the size along each input's batch axis (``batch_axes``); inputs without one (a sample
    rate, a fixed state) do not count, and a model with no batch axis at all counts its leading size when the
    inputs agree on it, else 1. Without ``specs``, the leading size shared by every non-scalar feed.
    ``strict=False`` is the cheap form for metrics and routing rules: it never raises and looks at the first
    input that has a batch axis (the first non-scalar one without specs); no feeds count 0.
    """
    if not strict:
        try:
            axes = _cached_axes(tuple(specs)) if specs is not None else {}
            for name, value in feeds.items():
                shape = np.shape(value)
                axis = axes.get(name, 0) if specs is not None else 0
                if axis is not None and len(shape) > axis:
                    return int(shape[axis])
            return 1 if feeds else 0
        except Exception:  # a metric or a rule must not fail a request
            return 1
    if specs is None:
        sizes = {n: int(np.shape(a)[0]) for n, a in feeds.items() if np.ndim(a)}
        if len(set(sizes.values())) > 1:
            raise InputError(f"inputs disagree on the batch dimension: {sorted(set(sizes.values()))} "
                             f"({', '.join(f'{n} {tuple(np.shape(a))}' for n, a in feeds.items())}); pass "
                             f"specs= (the model's input_specs) so each input's batch axis is known")
        return next(iter(sizes.values()), 1)
    axes = _cached_axes(tuple(specs))
    sizes = {n: int(np.shape(feeds[n])[a]) for n, a in axes.items()
             if a is not None and n in feeds and np.ndim(feeds[n]) > a}
    if not sizes:
        leading = {int(np.shape(a)[0]) for a in feeds.values() if np.ndim(a)}
        return leading.pop() if len(leading) == 1 else 1
    if len(set(sizes.values())) > 1:
        raise InputError(f"inputs disagree on the batch dimension: "
                         f"{', '.join(f'{n} has {s} on axis {axes[n]}' for n, s in sizes.items())}")
    return next(iter(sizes.values()))


# --- concrete shapes and synthetic inputs ----------------------------------------------------------------

IMAGE_SIZE = 224
"""Default for the dynamic spatial dims of a 4-D float input (an image: NCHW or NHWC)."""
SEQUENCE_LENGTH = 16
"""Default for the dynamic dims of a 2-D integer input (token ids, masks)."""
OTHER_SIZE = 128
"""Default for any other dynamic dim: big enough for most kernels and windows, small enough to be quick."""
MAX_SYNTHETIC_ELEMENTS = 2 ** 28
"""``synthetic_feeds`` refuses an input with more elements than this (1 GiB of float32) before allocating."""


def _default_size(spec: TensorSpec, axis: int) -> int:
    if spec.dtype.kind == "f" and len(spec.shape) == 4:
        if axis == 1 and all(_dynamic(d) for d in spec.shape[1:]):
            return 3  # fully dynamic image: channels first, as ONNX exporters write it
        return IMAGE_SIZE
    if spec.dtype.kind in "iu" and len(spec.shape) == 2:
        return SEQUENCE_LENGTH
    return OTHER_SIZE


def _declared_shapes(specs: Sequence[TensorSpec], input_shapes: Mapping[str, Sequence[int]] | None
                     ) -> dict[str, tuple[int, ...]]:
    by_name = {s.name: s for s in specs}
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in (input_shapes or {}).items():
        spec = by_name.get(name)
        if spec is None:
            raise ConfigError(f"input_shapes names unknown input {name!r}; the model expects {describe(specs)}")
        dims = tuple(shape) if isinstance(shape, (list, tuple)) else None
        if dims is None or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ConfigError(f"input_shapes[{name!r}] must be a list of ints >= 1, got {shape!r}")
        fixed = [a for a, (d, want) in enumerate(zip(dims, spec.shape)) if not _dynamic(want) and d != want]
        if len(dims) != len(spec.shape) or fixed:
            where = f"axis {fixed[0]}" if fixed else f"rank {len(dims)}, expected {len(spec.shape)}"
            raise ConfigError(f"input_shapes[{name!r}] = {list(dims)} does not fit {spec} ({where}); "
                              f"the model expects {describe(specs)}")
        out[name] = dims
    return out


def resolve_shapes(specs: Sequence[TensorSpec], batch_size: int | None = None, *,
                   input_shapes: Mapping[str, Sequence[int]] | None = None,
                   symbols: Mapping[str, int] | None = None) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every input, with the same size wherever the same symbolic name appears.

    ``input_shapes`` fixes whole shapes (e.g. ``{"x": [1, 3, 640, 640]}``) and binds their symbols for the
    other inputs; ``batch_size``, when given, sets every batch axis (``batch_axes``) and otherwise comes from
    ``input_shapes`` or is 1; ``symbols`` binds names directly. Anything left takes a documented default:
    ``IMAGE_SIZE`` for a 4-D float input's spatial dims, ``SEQUENCE_LENGTH`` for a 2-D integer input,
    ``OTHER_SIZE`` otherwise. A 1x1 image, the old default, breaks real detectors (Concat, reflect Pad).
    """
    declared = _declared_shapes(specs, input_shapes)
    axes = batch_axes(specs)
    bound = {k: int(v) for k, v in (symbols or {}).items()}
    for spec in specs:
        for axis, dim in enumerate(spec.shape):
            if spec.name in declared and isinstance(dim, str):
                size = declared[spec.name][axis]
                if bound.setdefault(dim, size) != size and not (batch_size is not None and axis == axes[spec.name]):
                    raise ConfigError(f"input_shapes give the symbolic dim {dim!r} two sizes ({bound[dim]} and "
                                      f"{size}); inputs that share a name must share its size")
    if batch_size is None:
        batch_size = next((declared[n][a] for n, a in axes.items() if a is not None and n in declared), 1)
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        batch_axis = axes[spec.name]
        if batch_axis is not None and isinstance(spec.shape[batch_axis], str):
            bound[spec.shape[batch_axis]] = batch_size
    for spec in specs:
        out: list[int] = []
        for axis, dim in enumerate(spec.shape):
            if axis == axes[spec.name]:
                out.append(batch_size)
            elif spec.name in declared:
                out.append(declared[spec.name][axis])
            elif not _dynamic(dim):
                out.append(int(dim))  # type: ignore[arg-type]
            elif isinstance(dim, str):
                out.append(bound.setdefault(dim, _default_size(spec, axis)))
            else:
                out.append(_default_size(spec, axis))
        shapes[spec.name] = tuple(out)
    return shapes


def _check_ranges(specs: Sequence[TensorSpec], value_ranges: Mapping[str, Sequence[float]] | None
                  ) -> dict[str, tuple[float, float]]:
    names = {s.name for s in specs}
    out: dict[str, tuple[float, float]] = {}
    for name, bounds in (value_ranges or {}).items():
        if name not in names:
            raise ConfigError(f"value_ranges names unknown input {name!r}; the model expects {describe(specs)}")
        ok = isinstance(bounds, (list, tuple)) and len(bounds) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if not ok or bounds[0] > bounds[1]:
            raise ConfigError(f"value_ranges[{name!r}] must be (low, high) with low <= high, got {bounds!r}")
        out[name] = (bounds[0], bounds[1])
    return out


def _config_like(spec: TensorSpec) -> bool:
    """An integer input holding one fixed value (shape ``()`` or ``[1]``): a setting (sample rate, top-k), not data.

    A ``[1, 1]`` input is left alone: that is a decoder's one token, not a setting.
    """
    return spec.dtype.kind in "iu" and len(spec.shape) <= 1 and all(d == 1 for d in spec.shape)


def synthetic_feeds(specs: Sequence[TensorSpec], batch_size: int | None = None, seed: int = 0,
                    symbols: Mapping[str, int] | None = None, int_high: int = 100, *,
                    input_shapes: Mapping[str, Sequence[int]] | None = None,
                    value_ranges: Mapping[str, Sequence[float]] | None = None) -> dict[str, np.ndarray]:
    """Random inputs that satisfy ``specs``, shaped by ``resolve_shapes``.

    Values: uniform in ``value_ranges[name]`` (inclusive for integers) when declared; else normals for
    floats, ones for integer inputs named like a mask, zeros for ``token_type``/``segment`` ids, and
    ``[0, int_high)`` for other integers (token ids). A scalar integer input without a declared range is
    refused: it is usually a setting such as a sample rate, and a random one silently changes what the
    model computes.
    """
    rng = np.random.default_rng(seed)
    ranges = _check_ranges(specs, value_ranges)
    shapes = resolve_shapes(specs, batch_size, input_shapes=input_shapes, symbols=symbols)
    for spec in specs:
        elements = math.prod(shapes[spec.name])
        if elements > MAX_SYNTHETIC_ELEMENTS:
            raise InputError(f"synthetic input '{spec.name}' would have shape {list(shapes[spec.name])} "
                             f"({elements:,} elements, over the cap of {MAX_SYNTHETIC_ELEMENTS:,}) for {spec}; "
                             f"pass smaller input_shapes={{'{spec.name}': [...]}} or data")
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape, low_name = shapes[spec.name], spec.name.lower()
        if spec.dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif spec.dtype.kind not in "fiu":
            raise InputError(f"cannot synthesize inputs of dtype {spec.dtype} for '{spec.name}'; pass data")
        elif spec.name in ranges:
            low, high = ranges[spec.name]
            values = rng.uniform(low, high, size=shape) if spec.dtype.kind == "f" else \
                rng.integers(int(low), int(high), size=shape, endpoint=True)
            feeds[spec.name] = np.asarray(values).astype(spec.dtype)
        elif spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif _config_like(spec):
            raise InputError(f"cannot make up a value for the integer input '{spec.name}' ({spec}): a single "
                             f"integer is usually a setting such as a sample rate; pass value_ranges="
                             f"{{'{spec.name}': (low, high)}} (e.g. (16000, 16000)) or data")
        elif "mask" in low_name:
            feeds[spec.name] = np.ones(shape, spec.dtype)
        elif "token_type" in low_name or "segment" in low_name:
            feeds[spec.name] = np.zeros(shape, spec.dtype)
        else:
            feeds[spec.name] = rng.integers(0, int_high, size=shape).astype(spec.dtype)
    return feeds

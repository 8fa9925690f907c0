"""The inputs every check, calibration and measurement runs on: the user's data, or honest synthetic inputs.

Notebooks and ``kit report`` take one ``data`` parameter::

    ds = load_data("data.npz", engine.input_specs)           # arrays named after the inputs, optional labels
    ds = load_data("mytok:feeds", engine.input_specs)        # a callable returning feeds (tokenizers, folders)
    ds = load_data(None, engine.input_specs, input_shapes={"x": [1, 3, 640, 640]})   # synthetic
    calibration, evaluation = ds.split(calibration=16, evaluation=32)
    print(ds.describe())   # what a self-check or a report says it ran on

Self-checks on made-up 1x1 images and random sample rates passed broken models and failed good ones
(issue 13), so everything that runs a model on "some inputs" takes a ``Dataset`` and says which one.
Synthetic inputs come from ``kit.specs.synthetic_feeds`` (its documented default sizes, declared
``input_shapes`` and ``value_ranges``); quality measured on them is agreement with float32, not accuracy.

Samples lie along each input's batch axis (``kit.specs.batch_axes``); inputs without one (a sample rate, a
fixed state) are shared by every sample. A model exported for batch 1 stacks its samples along axis 0.
When a callable's feeds vary in shape (text of different lengths) they stay a list of per-request feeds.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kit.errors import ConfigError, InputError, first_line
from kit.specs import TensorSpec, batch_axes, describe, synthetic_feeds

DEFAULT_SAMPLES = 32
"""Synthetic samples made when no data is given: enough to calibrate and evaluate, cheap at 640x640."""
_CALLABLE = re.compile(r"^(?P<module>[\w.\-/\\]+?):(?P<function>[A-Za-z_]\w*)$")
_EXPECTED = "a .npz file of arrays named after the model's inputs (optional 'labels') or 'module:function'"


def sample_axes(specs: Sequence[TensorSpec]) -> dict[str, int | None]:
    """The axis samples are stacked along, per input: the batch axis, or axis 0 of a batch-1 export."""
    axes = batch_axes(specs)
    if any(a is not None for a in axes.values()):
        return axes
    return {s.name: 0 if s.shape and s.shape[0] == 1 else None for s in specs}


def _shape_text(array: np.ndarray) -> str:
    return f"[{','.join(str(d) for d in array.shape)}] {array.dtype.name}"


@dataclass(frozen=True)
class Dataset:
    """Feeds for a model plus where they came from. Build with ``load_data``."""

    specs: tuple[TensorSpec, ...]
    source: str
    synthetic: bool
    arrays: Mapping[str, np.ndarray] | None = None
    """Every sample stacked along ``sample_axes`` (``None`` when the feeds vary in shape)."""
    requests: tuple[Mapping[str, np.ndarray], ...] | None = None
    """Per-request feeds of varying shape (``None`` when ``arrays`` holds the data)."""
    labels: Any = None
    note: str = ""
    seed: int = 0

    def __len__(self) -> int:
        if self.requests is not None:
            return len(self.requests)
        axes = sample_axes(self.specs)
        sizes = [a.shape[axes[n]] for n, a in (self.arrays or {}).items() if axes.get(n) is not None]
        return int(sizes[0]) if sizes else 1

    def take(self, indices: Sequence[int]) -> Dataset:
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else (
            [self.labels[i] for i in idx] if isinstance(self.labels, list) else np.take(self.labels, idx, axis=0))
        if self.requests is not None:
            return replace(self, requests=tuple(self.requests[i] for i in idx), labels=labels)
        axes = sample_axes(self.specs)
        arrays = {n: a if axes[n] is None else np.take(a, idx, axis=axes[n]) for n, a in (self.arrays or {}).items()}
        return replace(self, arrays=arrays, labels=labels)

    def split(self, calibration: int, evaluation: int | None = None) -> tuple[Dataset, Dataset]:
        """Disjoint calibration and evaluation sets, drawn by a seeded shuffle (``evaluation=None``: the rest)."""
        n = len(self)
        for name, value in (("calibration", calibration), ("evaluation", evaluation)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
        wanted = calibration + (evaluation if evaluation is not None else 1)
        if wanted > n:
            raise ConfigError(f"{self.source} has {n} samples, too few for calibration={calibration} and "
                              f"evaluation={evaluation if evaluation is not None else 'at least 1'} without overlap; "
                              f"pass more data or ask for fewer samples")
        order = np.random.default_rng(self.seed).permutation(n)
        end = calibration + (evaluation if evaluation is not None else n - calibration)
        return self.take(np.sort(order[:calibration])), self.take(np.sort(order[calibration:end]))

    def batches(self, batch_size: int = 1) -> list[dict[str, np.ndarray]]:
        """Feeds of ``batch_size`` samples each (the last may be smaller); varying feeds come one by one."""
        if self.requests is not None:
            if batch_size != 1:
                raise ConfigError(f"{self.source} holds feeds of varying shape: they run one request at a time")
            return [dict(r) for r in self.requests]
        if batch_size != 1 and not any(a is not None for a in batch_axes(self.specs).values()):
            raise ConfigError(f"batch_size={batch_size}: the model takes a fixed batch ({describe(self.specs)})")
        return [dict(self.take(range(i, min(i + batch_size, len(self)))).arrays or {})
                for i in range(0, len(self), batch_size)]

    def describe(self) -> str:
        """One line saying what the inputs are, for self-checks and reports."""
        if self.requests is not None:
            first = ", ".join(f"{n} {_shape_text(a)}" for n, a in self.requests[0].items())
            body = f"{len(self)} requests of varying shape, the first {first}"
        else:
            body = f"{len(self)} samples, " + ", ".join(f"{n} {_shape_text(a)}" for n, a in (self.arrays or {}).items())
        if self.labels is not None:
            body += f", labels ({len(self.labels)})"
        if self.synthetic:
            return (f"synthetic inputs from the model's specs ({self.note}): {body}; quality is agreement with "
                    f"float32, not accuracy")
        origin = "" if self.source.startswith("the zoo") else "user data "  # see kit.models.model_data
        return f"{origin}{self.source}: {body}"

    def to_record(self) -> dict[str, Any]:
        """Machine-readable sibling of ``describe`` for a report's results JSON."""
        return {"data": self.source, "synthetic": self.synthetic, "samples": len(self),
                "labels": self.labels is not None, "description": self.describe()}


def load_data(data: str | os.PathLike[str] | Mapping[str, Any] | None, specs: Any, *,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              value_ranges: Mapping[str, Sequence[float]] | None = None,
              samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Dataset:
    """A ``Dataset`` for a model with ``specs`` (its ``input_specs``, or anything that has them).

    ``data`` is a ``.npz`` path, ``"module:function"`` (or ``"file.py:function"``) naming a callable that
    takes no arguments and returns feeds, a mapping of arrays, or ``None`` for ``samples`` synthetic samples
    shaped by ``input_shapes`` and valued by ``value_ranges`` (both ignored when data is given). Bad data
    raises one-line ``ConfigError`` (cannot read or import it) or ``InputError`` (does not fit the model).
    """
    specs = tuple(getattr(specs, "input_specs", specs))
    if data is None:
        return _synthetic(specs, input_shapes, value_ranges, samples, seed)
    if isinstance(data, Mapping):
        return _from_mapping(dict(data), specs, "arrays given in Python", seed)
    text = str(data)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise ConfigError(f"data {path} is not a .npz file; expected {_EXPECTED}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:
            raise ConfigError(f"cannot read {path} as .npz ({first_line(exc)}); expected {_EXPECTED}") from exc
        return _from_mapping(arrays, specs, path.name, seed)
    match = _CALLABLE.match(text)
    if match is None or path.exists():
        raise ConfigError(f"data path does not exist: {path}; expected {_EXPECTED}")
    return _from_result(_call(match["module"], match["function"], text), specs, text, seed)


def _synthetic(specs: tuple[TensorSpec, ...], input_shapes: Any, value_ranges: Any, samples: int,
               seed: int) -> Dataset:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be an int >= 1, got {samples!r}")
    parts = [f"input_shapes {dict(input_shapes)}" if input_shapes else "default shapes"]
    parts += [f"value_ranges {dict(value_ranges)}"] if value_ranges else []
    kwargs = {"input_shapes": input_shapes, "value_ranges": value_ranges}
    if any(a is not None for a in batch_axes(specs).values()):
        arrays = synthetic_feeds(specs, samples, seed, **kwargs)
    else:  # a batch-1 export: one request per sample, stacked along axis 0; the rest made once, shared
        made = [synthetic_feeds(specs, None, seed + i, **kwargs) for i in range(samples)]
        axes = sample_axes(specs)
        arrays = {n: a if axes[n] is None else np.concatenate([m[n] for m in made], axis=axes[n])
                  for n, a in made[0].items()}
    return Dataset(specs, "synthetic", True, arrays=arrays, note="; ".join(parts), seed=seed)


def _call(module: str, function: str, text: str) -> Any:
    try:
        if module.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(module).stem, module)
            if spec is None or spec.loader is None or not Path(module).is_file():
                raise ImportError(f"no file {module}")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
    except Exception as exc:
        raise ConfigError(f"cannot import {module!r} for data={text!r}: {first_line(exc)}; expected "
                          f"{_EXPECTED}") from exc
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise ConfigError(f"data={text!r}: module {module!r} has no function {function!r}")
    try:
        return fn()
    except Exception as exc:
        raise ConfigError(f"data function {text} raised {type(exc).__name__}: {first_line(exc)}") from exc


def _pop_labels(feeds: dict[str, Any], specs: Sequence[TensorSpec]) -> Any:
    return feeds.pop("labels") if "labels" in feeds and all(s.name != "labels" for s in specs) else None


def _check_sample(specs: Sequence[TensorSpec], feeds: Mapping[str, np.ndarray], source: str,
                  axes: Mapping[str, int | None]) -> None:
    """Names, dtypes, ranks and fixed dims, checked on one sample; the message lists what the model expects."""
    expected = {s.name: s for s in specs}
    missing, unknown = sorted(set(expected) - set(feeds)), sorted(set(feeds) - set(expected))
    if missing or unknown:
        raise InputError(f"{source}: input names do not match (missing {missing}, unknown {unknown}); the model "
                         f"expects {describe(specs)}")
    for name, spec in expected.items():
        array, axis = feeds[name], axes[name]
        one = array if axis is None or array.ndim <= axis else np.take(array, [0], axis=axis)
        problem = spec.matches(one)
        if problem:
            raise InputError(f"{source}: input '{name}' {_shape_text(array)} has {problem} (per sample); the model "
                             f"expects {describe(specs)}")


def _from_mapping(feeds: dict[str, Any], specs: tuple[TensorSpec, ...], source: str, seed: int) -> Dataset:
    labels = _pop_labels(feeds, specs)
    arrays = {n: np.asarray(v) for n, v in feeds.items()}
    axes = sample_axes(specs)
    _check_sample(specs, arrays, source, axes)
    counts = {n: int(a.shape[axes[n]]) for n, a in arrays.items() if axes[n] is not None}
    if len(set(counts.values())) > 1:
        raise InputError(f"{source}: inputs disagree on the number of samples: "
                         f"{', '.join(f'{n} {c}' for n, c in counts.items())}")
    n = next(iter(counts.values()), 1)
    if n == 0:
        raise InputError(f"{source}: no samples")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 0 or len(labels) != n:
            raise InputError(f"{source}: labels has shape {labels.shape}, expected {n} entries (one per sample)")
    return Dataset(specs, source, False, arrays=arrays, labels=labels, seed=seed)


def _from_result(result: Any, specs: tuple[TensorSpec, ...], source: str, seed: int) -> Dataset:
    if isinstance(result, Mapping):
        return _from_mapping(dict(result), specs, source, seed)
    if not isinstance(result, Iterable) or isinstance(result, (str, bytes, np.ndarray)):
        raise ConfigError(f"data function {source} returned {type(result).__name__}; expected a mapping of input "
                          f"name to array or an iterable of such mappings")
    requests, labels = [], []
    axes = sample_axes(specs)
    for i, item in enumerate(result):
        if not isinstance(item, Mapping):
            raise ConfigError(f"data function {source} yielded {type(item).__name__} as item {i}; expected "
                              f"mappings of input name to array")
        feeds = dict(item)
        labels.append(_pop_labels(feeds, specs))
        arrays = {n: np.asarray(v) for n, v in feeds.items()}
        _check_sample(specs, arrays, f"{source} item {i}", axes)
        requests.append(arrays)
    if not requests:
        raise InputError(f"data function {source} returned no feeds")
    has_labels = all(lab is not None for lab in labels)

    def rest(a: np.ndarray, axis: int | None) -> tuple[int, ...]:
        return a.shape if axis is None else a.shape[:axis] + a.shape[axis + 1:]

    uniform = all(rest(r[n], axes[n]) == rest(requests[0][n], axes[n]) and
                  (axes[n] is not None or np.array_equal(r[n], requests[0][n])) for r in requests for n in r)
    if not uniform:
        return Dataset(specs, source, False, requests=tuple(requests), labels=labels if has_labels else None,
                       seed=seed)
    arrays = {n: requests[0][n] if axes[n] is None else np.concatenate([r[n] for r in requests], axis=axes[n])
              for n in requests[0]}
    joined = np.concatenate([np.atleast_1d(lab) for lab in labels]) if has_labels else None
    return _from_mapping({**arrays, **({"labels": joined} if joined is not None else {})}, specs, source, seed)

"""Samples of evaluation data along each input's own axis, and a model's outputs over all of them.

Most models stack samples on axis 0; a recurrent model's state holds them on axis 1 and a sample rate
is shared by all (``kit.data.sample_axes`` says which). ``evaluate`` slices, repeats and runs data
through these, so a state model is compared the same way as an image classifier.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def fixed_batch(predictor) -> int | None:
    """The batch size a model was exported with, read on each input's sample axis (a state's is not axis 0)."""
    from kit.data import sample_axes

    specs = predictor.input_specs
    axes = sample_axes(specs)
    if all(a is None for a in axes.values()):  # no batch axis anywhere: a fixed first dimension is the batch
        axes = {s.name: 0 for s in specs if s.shape}
    dims = {s.shape[axes[s.name]] for s in specs
            if axes.get(s.name) is not None and isinstance(s.shape[axes[s.name]], int)}
    return dims.pop() if len(dims) == 1 else None


Axes = Mapping[str, "int | None"]
"""The axis each input's samples lie along (``kit.data.sample_axes``); ``None``: shared by every sample."""


def input_axes(data: Mapping[str, np.ndarray], axes: Axes | None) -> dict[str, int | None]:
    """Each input's sample axis: as given (a recurrent state's is often 1), else 0; scalars have none."""
    return {k: None if not v.ndim else (axes or {}).get(k, 0) for k, v in data.items()}


def sample_counts(data: Mapping[str, np.ndarray], axes: Axes) -> set[int]:
    return {v.shape[axes[k]] for k, v in data.items() if axes[k] is not None}


def sample_rows(data: Mapping[str, np.ndarray], start: int, stop: int, axes: Axes) -> dict[str, np.ndarray]:
    return {k: v if axes[k] is None else v[(slice(None),) * axes[k] + (slice(start, stop),)] for k, v in data.items()}


def take_samples(data: Mapping[str, np.ndarray], n: int, axes: Axes) -> dict[str, np.ndarray]:
    """The first ``n`` samples, repeating them when there are fewer (shared inputs as they are)."""
    return {k: v if axes[k] is None else np.take(v, np.arange(n) % v.shape[axes[k]], axis=axes[k])
            for k, v in data.items()}


def run_outputs(predictor, data: Mapping[str, np.ndarray], batch_size: int,
                axes: Axes | None = None) -> dict[str, np.ndarray]:
    """Every output over every sample of ``data`` (along ``axes``, default the first), in chunks the model accepts.

    Outputs are joined along their sample axis: the declared one, or else the first axis whose
    size is the chunk's sample count (a returned recurrent state's is 1 and often undeclared).
    An output with none (a per-call value) is joined flattened, the same way for every variant.
    """
    from kit.data import sample_axes

    axes = input_axes(data, axes)
    count = max(sample_counts(data, axes))
    fixed = fixed_batch(predictor)
    step = fixed or batch_size
    declared = sample_axes(predictor.output_specs)
    out_axes: dict[str, int | None] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, step):
        chunk = sample_rows(data, start, start + step, axes)
        got = min(step, count - start)
        if got < step and fixed:
            chunk = take_samples(chunk, step, axes)
        answered = fixed or got  # samples in this call's answer
        for name, value in predictor.predict(chunk).items():
            value = np.asarray(value)
            if name not in out_axes:  # from the first call, which holds a whole chunk
                hits = [a for a in range(value.ndim) if value.shape[a] == answered]
                want = declared.get(name, 0)
                out_axes[name] = want if want in hits else (hits[0] if hits else None)
            axis = out_axes[name]
            if axis is not None and axis < value.ndim and value.shape[axis] == answered:
                value = value[(slice(None),) * axis + (slice(0, got),)]
            parts.setdefault(name, []).append(value)
    joined = {}
    for name, values in parts.items():
        axis = out_axes.get(name)
        if len(values) == 1:
            joined[name] = values[0]
        elif axis is not None and all(v.ndim > axis for v in values):
            joined[name] = np.concatenate(values, axis=axis)
        else:
            joined[name] = np.concatenate([v.ravel() for v in values])
    return joined

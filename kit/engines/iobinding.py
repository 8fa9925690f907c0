"""IO binding: run an ONNX Runtime session with inputs and outputs placed on the device.

``InferenceSession.run`` copies every input from host to device and every output back,
on every call. With the CUDA provider that copy can cost more than the model at large
batches. ``IoBoundEngine`` wraps an ``OnnxRuntimeEngine`` (whose plain ``predict`` fast
path stays untouched) and runs it through ``session.io_binding()``:

- ``predict(feeds)``: numpy in, numpy out, binding inputs and device-allocated outputs
  (one copy each way, done by ONNX Runtime without intermediate host buffers);
- ``to_device(feeds)`` + ``run_on_device(values)``: inputs already resident on the device,
  outputs left there, so a pipeline of models never touches the host;
- ``reuse_buffers=True``: fixed input and output buffers per input shape, refilled in
  place (``OrtValue.update_inplace``). That is what CUDA graphs need (fixed addresses);
  with ``CudaOptions(enable_cuda_graph=True)`` only one input shape is allowed per engine.

On CPU the same code runs (device ``cpu``), so it is tested everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kit.engines.base import Feeds, Outputs, PredictorBase
from kit.engines.onnxruntime import OnnxRuntimeEngine, import_onnxruntime
from kit.errors import Closed, ConfigError, InferenceError, InputError, first_line
from kit.specs import batch_axes, batch_size_of, check_feeds, fast_path_ok, resolve_shapes

_DEVICE_OF_PROVIDER = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda",
                       "CPUExecutionProvider": "cpu"}


class IoBoundEngine(PredictorBase):
    """A Predictor running an ``OnnxRuntimeEngine`` through IO binding on its first provider's device."""

    def __init__(self, engine: OnnxRuntimeEngine, reuse_buffers: bool = False, name: str | None = None,
                 close_engine: bool = True) -> None:
        if not isinstance(engine, OnnxRuntimeEngine):
            raise ConfigError(f"IoBoundEngine wraps an OnnxRuntimeEngine, got {type(engine).__name__}")
        self._ort = import_onnxruntime()
        self.engine = engine
        self.name = name or f"iobound({engine.name})"
        session = engine.session
        provider = engine.active_providers[0]
        if provider not in _DEVICE_OF_PROVIDER:
            raise ConfigError(f"IO binding supports {sorted(_DEVICE_OF_PROVIDER)}; the session runs on {provider}")
        self.device = _DEVICE_OF_PROVIDER[provider]
        options = session.get_provider_options().get(provider, {})
        self.device_id = int(options.get("device_id", 0)) if self.device == "cuda" else 0
        self.cuda_graph = options.get("enable_cuda_graph", "0") in ("1", "True", "true")
        if self.cuda_graph and not reuse_buffers:
            raise ConfigError("a session with enable_cuda_graph needs fixed buffers: use reuse_buffers=True")
        self.reuse_buffers = reuse_buffers
        self.close_engine = close_engine
        self._input_specs = engine.input_specs
        self._output_specs = engine.output_specs
        self._output_names = [s.name for s in self._output_specs]
        self._input_names = frozenset(s.name for s in self._input_specs)
        self._bound: dict[tuple, tuple[Any, dict[str, Any], list[Any]]] = {}

    # -- device-resident path --------------------------------------------------------------
    def to_device(self, feeds: Feeds) -> dict[str, Any]:
        """Copy numpy feeds into ``OrtValue``s on the engine's device (once, ahead of the runs)."""
        arrays = check_feeds(self._input_specs, feeds)
        return {k: self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v), self.device, self.device_id)
                for k, v in arrays.items()}

    def run_on_device(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Run on device-resident inputs; outputs stay on the device as ``OrtValue``s."""
        binding = self._session().io_binding()
        for name, value in values.items():
            binding.bind_ortvalue_input(name, value)
        for name in self._output_names:
            binding.bind_output(name, self.device, self.device_id)
        self._run(binding)
        return dict(zip(self._output_names, binding.get_outputs()))

    # -- Predictor ---------------------------------------------------------------------------
    def predict(self, feeds: Feeds) -> Outputs:
        if self.reuse_buffers:
            return self._predict_reused(feeds)
        session = self._session()
        if not fast_path_ok(feeds, self._input_names):
            feeds = check_feeds(self._input_specs, feeds)  # byte order, lists, empty batch: as every engine
        binding = session.io_binding()
        try:
            for name, array in feeds.items():
                binding.bind_cpu_input(name, array)
        except Exception as exc:
            check_feeds(self._input_specs, feeds)  # raises InputError naming what the model expects
            raise InputError(f"cannot bind the inputs of {self.name!r}: {first_line(exc)}") from exc
        for name in self._output_names:
            binding.bind_output(name, self.device, self.device_id)
        self._run(binding, feeds)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def _predict_reused(self, feeds: Feeds) -> Outputs:
        arrays = check_feeds(self._input_specs, feeds)
        key = tuple((k, arrays[k].shape) for k in sorted(arrays))
        if key not in self._bound:
            if self.cuda_graph and self._bound:
                (old,) = self._bound
                raise InputError(f"{self.name!r} captured a CUDA graph for input shapes {dict(old)}; "
                                 f"got {dict(key)}: a CUDA graph replays one shape (make one engine per shape)")
            self._bound[key] = self._allocate(arrays)
        binding, inputs, outputs = self._bound[key]
        for name, array in arrays.items():
            inputs[name].update_inplace(np.ascontiguousarray(array))
        self._run(binding, feeds)
        return {name: value.numpy() for name, value in zip(self._output_names, outputs)}

    def _allocate(self, arrays: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any], list[Any]]:
        """Fixed device buffers for this input shape; output shapes follow from the input dims."""
        symbols: dict[str, int] = {}
        for spec in self._input_specs:
            for dim, size in zip(spec.shape, arrays[spec.name].shape):
                if isinstance(dim, str):
                    symbols[dim] = int(size)
        batch = batch_size_of(arrays, self._input_specs)
        out_axes = batch_axes(self._output_specs)
        make = self._ort.OrtValue.ortvalue_from_shape_and_type
        binding = self._session().io_binding()
        inputs = {}
        for name, array in arrays.items():
            inputs[name] = make(array.shape, array.dtype, self.device, self.device_id)
            binding.bind_ortvalue_input(name, inputs[name])
        outputs = []
        shapes = resolve_shapes(self._output_specs, batch, symbols=symbols)
        for spec in self._output_specs:
            unresolved = [d for axis, d in enumerate(spec.shape)
                          if axis != out_axes[spec.name] and not isinstance(d, int) and d not in symbols]
            if unresolved:
                raise ConfigError(f"reuse_buffers needs output shapes that follow from the input shapes; "
                                  f"output {spec} has unresolved dims {unresolved}")
            value = make(shapes[spec.name], spec.dtype, self.device, self.device_id)
            binding.bind_ortvalue_output(spec.name, value)
            outputs.append(value)
        return binding, inputs, outputs

    def _run(self, binding: Any, feeds: Feeds | None = None) -> None:
        try:
            self._session().run_with_iobinding(binding)
        except Exception as exc:
            if feeds is not None:
                check_feeds(self._input_specs, feeds)
            raise InferenceError(f"ONNX Runtime (IO binding, {self.device}) failed on {self.name!r}: "
                                 f"{first_line(exc)}") from exc

    def _session(self):
        if self.closed:
            raise Closed(f"engine {self.name!r} is closed")
        return self.engine.session

    def _close(self) -> None:
        self._bound.clear()
        if self.close_engine:
            self.engine.close()

    def describe(self) -> dict[str, Any]:
        return {**self.engine.describe(), "predictor": type(self).__name__, "name": self.name,
                "io_binding": self.device, "reuse_buffers": self.reuse_buffers, "cuda_graph": self.cuda_graph}

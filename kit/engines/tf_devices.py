"""TensorFlow process settings: visible GPUs, memory growth, memory cap, intra/inter-op threads.

TensorFlow reads all of these once, when its runtime first initialises (the first op,
the first model load, the first ``list_logical_devices``). After that they cannot change
in the process: TensorFlow raises for threads and silently ignores some device settings.
``configure_tensorflow`` therefore refuses loudly (``ConfigError``) when TensorFlow is
already initialised, and the thread sweep (``kit.profile.threads``) runs each TensorFlow
setting in a fresh process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kit.config import require_int
from kit.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TFDeviceConfig:
    """What TensorFlow may use in this process.

    ``visible_gpus``: GPU indices to expose (``None``: all, ``()``: none, CPU only).
    ``memory_growth``: allocate GPU memory as needed instead of grabbing it all at start.
    ``memory_limit_mb``: cap each visible GPU with a logical device of this size.
    Threads: 0 lets TensorFlow choose.
    """

    visible_gpus: tuple[int, ...] | None = None
    memory_growth: bool = True
    memory_limit_mb: int | None = None
    intra_op_num_threads: int = 0
    inter_op_num_threads: int = 0

    def __post_init__(self) -> None:
        if self.visible_gpus is not None:
            gpus = tuple(self.visible_gpus)
            if any(not isinstance(g, int) or isinstance(g, bool) or g < 0 for g in gpus):
                raise ConfigError(f"visible_gpus must be GPU indices >= 0 or None, got {self.visible_gpus!r}")
            if len(set(gpus)) != len(gpus):
                raise ConfigError(f"visible_gpus lists a GPU twice: {gpus}")
            object.__setattr__(self, "visible_gpus", gpus)
        require_int("memory_limit_mb", self.memory_limit_mb, allow_none=True)
        if self.memory_limit_mb is not None and self.memory_growth:
            raise ConfigError("memory_growth and memory_limit_mb exclude each other in TensorFlow; "
                              "set memory_growth=False to cap memory")
        for name in ("intra_op_num_threads", "inter_op_num_threads"):
            require_int(name, getattr(self, name), 0, hint=" (0 lets TensorFlow choose)")


def tensorflow_initialised() -> bool:
    """Whether TensorFlow's runtime has started in this process (settings are then frozen)."""
    import sys

    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.eager import context

    return getattr(context.context(), "_context_handle", None) is not None


def configure_tensorflow(config: TFDeviceConfig) -> dict[str, Any]:
    """Apply ``config`` before TensorFlow's first use; returns what was applied, for results.

    Raises ``ConfigError`` if TensorFlow is already initialised (restart the kernel, or
    let ``kit.profile.threads`` run the setting in a fresh process) or a GPU index does
    not exist.
    """
    from kit._quiet import import_tensorflow

    tf = import_tensorflow()
    if tensorflow_initialised():
        raise ConfigError("TensorFlow is already initialised in this process, so devices, memory and threads "
                          "can no longer change: call configure_tensorflow before loading any TensorFlow model "
                          "(restart the kernel), or run the setting in a fresh process")
    gpus = tf.config.list_physical_devices("GPU")
    try:
        if config.visible_gpus is not None:
            missing = [g for g in config.visible_gpus if g >= len(gpus)]
            if missing:
                raise ConfigError(f"visible_gpus {list(missing)} do not exist; this machine has {len(gpus)} GPU(s)")
            chosen = [gpus[g] for g in config.visible_gpus]
            tf.config.set_visible_devices(chosen, "GPU")
        else:
            chosen = gpus
        for gpu in chosen:
            if config.memory_limit_mb is not None:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=config.memory_limit_mb)])
            else:
                tf.config.experimental.set_memory_growth(gpu, config.memory_growth)
        tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_num_threads)
    except RuntimeError as exc:  # TF's "cannot be modified after initialization"
        raise ConfigError(f"TensorFlow refused the device/thread settings: {exc} "
                          f"(set them before TensorFlow's first use)") from exc
    applied = {"physical_gpus": len(gpus), "visible_gpus": [g.name for g in chosen],
               "memory_growth": config.memory_growth if config.memory_limit_mb is None else False,
               "memory_limit_mb": config.memory_limit_mb,
               "intra_op_num_threads": tf.config.threading.get_intra_op_parallelism_threads(),
               "inter_op_num_threads": tf.config.threading.get_inter_op_parallelism_threads()}
    log.info("TensorFlow configured: %s", applied)
    return applied

"""TensorFlow device/thread settings: validated configs, and a loud error once TF has started."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kit.engines.tf_devices import TFDeviceConfig
from kit.errors import ConfigError


@pytest.mark.parametrize("kwargs", [dict(visible_gpus=(-1,)), dict(visible_gpus=(0, 0)),
                                    dict(memory_limit_mb=0), dict(memory_limit_mb=512),  # growth on
                                    dict(intra_op_num_threads=-1), dict(inter_op_num_threads=1.5)])
def test_bad_tf_device_configs_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        TFDeviceConfig(**kwargs)


def test_memory_cap_needs_growth_off():
    assert TFDeviceConfig(memory_limit_mb=512, memory_growth=False).memory_limit_mb == 512


@pytest.mark.tensorflow
def test_settings_apply_before_first_use_and_fail_loudly_after():
    """Run in a fresh process: TensorFlow's settings are process-wide and frozen at first use."""
    code = textwrap.dedent("""
        from kit.engines.tf_devices import TFDeviceConfig, configure_tensorflow, tensorflow_initialised
        from kit.errors import ConfigError
        assert not tensorflow_initialised()
        applied = configure_tensorflow(TFDeviceConfig(visible_gpus=(), intra_op_num_threads=1, inter_op_num_threads=2))
        assert applied["intra_op_num_threads"] == 1 and applied["inter_op_num_threads"] == 2, applied
        assert applied["visible_gpus"] == []
        import tensorflow as tf
        tf.constant(1.0) + 1.0
        assert tensorflow_initialised()
        try:
            configure_tensorflow(TFDeviceConfig(intra_op_num_threads=2))
        except ConfigError as exc:
            assert "already initialised" in str(exc)
            print("REFUSED")
        try:
            configure_tensorflow(TFDeviceConfig(visible_gpus=(7,)))
        except ConfigError as exc:
            print("REFUSED2")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED" in out.stdout and "REFUSED2" in out.stdout


@pytest.mark.tensorflow
def test_missing_gpu_index_is_a_config_error():
    code = textwrap.dedent("""
        from kit.engines.tf_devices import TFDeviceConfig, configure_tensorflow
        from kit.errors import ConfigError
        import tensorflow as tf
        n = len(tf.config.list_physical_devices("GPU"))
        try:
            configure_tensorflow(TFDeviceConfig(visible_gpus=(n,)))
        except ConfigError as exc:
            assert "do not exist" in str(exc), exc
            print("REFUSED")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "REFUSED" in out.stdout

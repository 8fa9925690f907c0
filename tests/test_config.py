"""kit.config: the one int check and the one config/overrides resolution the kit shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from kit.config import require_int, resolve
from kit.errors import ConfigError
from kit.serve.batching import BatchingConfig


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None, [1]])
def test_require_int_refuses_bools_non_ints_and_none(value):
    with pytest.raises(ConfigError, match=r"^workers must be an int >= 0, got "):
        require_int("workers", value, 0)


def test_require_int_refuses_values_below_the_minimum_and_names_the_parameter():
    with pytest.raises(ConfigError, match=r"^max_queue must be an int >= 1, got 0$"):
        require_int("max_queue", 0)
    with pytest.raises(ConfigError, match=r"^threads must be an int >= 0 \(0: any\), got -1$"):
        require_int("threads", -1, 0, hint=" (0: any)")
    require_int("max_queue", 1)
    require_int("threads", 0, 0)


def test_require_int_lets_none_pass_only_when_allowed():
    require_int("limit", None, allow_none=True)
    require_int("limit", 5, allow_none=True)
    with pytest.raises(ConfigError, match=r"^limit must be an int >= 1 \(bytes\) or None, got True$"):
        require_int("limit", True, hint=" (bytes)", allow_none=True)
    with pytest.raises(ConfigError, match="limit must be an int >= 1, got None"):
        require_int("limit", None)


@dataclass(frozen=True)
class _Config:
    size: int = 1
    name: str = "a"

    def __post_init__(self) -> None:
        require_int("size", self.size)


def test_resolve_builds_from_overrides_when_there_is_no_config():
    assert resolve(_Config, None, {}) == _Config()
    assert resolve(_Config, None, {"size": 3}) == _Config(size=3)


def test_resolve_returns_the_config_itself_without_overrides():
    config = _Config(size=2)
    assert resolve(_Config, config, {}) is config


def test_resolve_replaces_overridden_fields_and_revalidates():
    config = _Config(size=2, name="b")
    assert resolve(_Config, config, {"size": 4}) == _Config(size=4, name="b")
    assert config.size == 2
    with pytest.raises(ConfigError, match="size"):
        resolve(_Config, config, {"size": 0})


def test_batching_config_refuses_a_bool_timeout_but_takes_numpy_ints():
    with pytest.raises(ConfigError, match="batch_timeout_micros must be an int >= 0"):
        BatchingConfig(batch_timeout_micros=True)
    with pytest.raises(ConfigError, match="max_batch_size"):
        BatchingConfig(max_batch_size=True)
    assert BatchingConfig(max_batch_size=np.int64(8), batch_timeout_micros=np.int32(0)).max_batch_size == 8

"""How parameters become typed configs, and how bad values are refused.

Many kit objects take a frozen ``*Config``/``*Options`` dataclass plus keyword
overrides, and many configs check that a count is an int above some bound. Written out
by hand at each site, those two patterns drifted apart (some sites let ``True`` pass as
``1``, some worded the message differently); this module is the one place for both.
It imports only the standard library and ``kit.errors``, so any kit module can use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from kit.errors import ConfigError

T = TypeVar("T")


def require_int(name: str, value: object, minimum: int = 1, *, hint: str = "", allow_none: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is an int >= ``minimum`` (or None, if ``allow_none``).

    A bool is refused although ``isinstance(True, int)``: ``workers=True`` is a mistake,
    not one worker. ``hint`` is appended after the bound, e.g. ``" (0 lets the runtime choose)"``.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}{hint}{' or None' if allow_none else ''}, "
                          f"got {value!r}")


def resolve(cls: type[T], config: T | None, overrides: Mapping[str, Any]) -> T:
    """``cls(**overrides)`` when ``config`` is None, else ``config`` with ``overrides`` replaced.

    The config is frozen, so returning ``config`` itself when there is nothing to override
    is safe; each construction re-runs the class's validation.
    """
    if config is None:
        return cls(**overrides)
    return dataclasses.replace(config, **overrides) if overrides else config  # type: ignore[type-var]

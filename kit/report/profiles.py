"""Parameter profiles: one folder, ``notebooks/profiles/``, one JSON file per notebook.

A notebook's ``parameters`` cell holds the ``full`` values a researcher sees; each
profile file overrides them per profile (``{"quick": {...}, "full": {}}``), so CI's
``quick`` run and a real study execute the very same notebook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kit.errors import ConfigError

PROFILES = ("quick", "full")


def _notebook_dir() -> Path:
    """The notebooks beside ``kit/`` in a checkout (so edits there run), else the installed package data."""
    checkout = Path(__file__).resolve().parents[2] / "notebooks"
    if (checkout / "profiles").is_dir():
        return checkout
    import kit.notebooks  # package data (a namespace package: the folder holds no Python)

    return Path(next(iter(kit.notebooks.__path__)))


NOTEBOOK_DIR = _notebook_dir()
PROFILE_DIR = NOTEBOOK_DIR / "profiles"


def list_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks the main job runs, in name order (``00_...`` first)."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def profile_parameters(notebook: str | Path, profile: str, profile_dir: Path = PROFILE_DIR) -> dict[str, Any]:
    """Parameters that ``profile`` passes to ``notebook`` (empty: the notebook's own values)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    path = profile_dir / f"{Path(notebook).stem}.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"profile file {path} is not valid JSON: {exc}") from exc
    params = data.get(profile, {})
    if not isinstance(params, dict):
        raise ConfigError(f"profile {profile!r} in {path} must be an object of parameter values")
    return params


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
                                        "list": (list, tuple), "dict": (dict,), "tuple": (tuple, list)}


def check_parameters(notebook: str | Path, params: dict[str, Any]) -> None:
    """Refuse, before any kernel starts, a parameter the notebook lacks or one of the wrong type.

    Types come from the annotations in the notebook's ``parameters`` cell, as papermill
    reads them; papermill itself would inject an unknown name silently.
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    for name, value in params.items():
        if name not in declared:
            raise ConfigError(f"{Path(notebook).stem} has no parameter {name!r}; its parameters are "
                              f"{sorted(declared)}")
        expected = _TYPES.get(declared[name]["inferred_type_name"])
        if expected and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            raise ConfigError(f"{Path(notebook).stem} parameter {name!r} must be a "
                              f"{declared[name]['inferred_type_name']} ({declared[name]['help']}), "
                              f"got {value!r}")


def _typed(notebook: str, name: str, text: str, declared: dict[str, Any]) -> Any:
    kind = declared["inferred_type_name"]
    expected = f"{notebook} parameter {name!r} is a {kind} ({declared['help']})"
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if kind in ("list", "dict", "tuple"):
            value = json.loads(text)
            if not isinstance(value, _TYPES[kind]):
                raise ValueError(text)
            return value
    except ValueError:
        raise ConfigError(f"{expected}; got {text!r}" + (" (write lists and dicts as JSON, e.g. [1, 8])"
                                                           if kind in ("list", "dict", "tuple") else "")) from None
    return text


def typed_parameters(notebooks: list[Path], pairs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """``-p NAME VALUE`` pairs typed by each notebook's declared parameter types, per notebook.

    A name goes to every chosen notebook that declares it; a name no chosen notebook declares,
    or a value that does not parse as the declared type, is a ``ConfigError`` before any kernel
    starts (papermill itself would inject an unknown name silently and pass every value as text).
    """
    import papermill as pm

    declared = {p.stem: pm.inspect_notebook(str(p)) for p in notebooks}
    out: dict[str, dict[str, Any]] = {p.stem: {} for p in notebooks}
    for name, text in pairs:
        owners = [stem for stem, params in declared.items() if name in params]
        if not owners:
            known = sorted({n for params in declared.values() for n in params})
            raise ConfigError(f"no chosen notebook has a parameter {name!r}; their parameters are {known}")
        for stem in owners:
            out[stem][name] = _typed(stem, name, text, declared[stem][name])
    return out

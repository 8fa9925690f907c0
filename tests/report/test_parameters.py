"""Notebook parameters: one checked config per notebook, one name per idea across all of them."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest

from kit.errors import ConfigError
from kit.report.parameters import from_globals, list_of, one_of, parameters_class, positive_int, registered
from kit.report.profiles import NOTEBOOK_DIR, PROFILES, list_notebooks, profile_parameters

NOTEBOOKS = list_notebooks()
# Names that once spelled an idea another way; each has one name now (the value).
RETIRED = {"threads": "intra_op_num_threads", "num_threads": "intra_op_num_threads",
           "intra_op_threads": "intra_op_num_threads", "tflite_threads": "intra_op_num_threads",
           "graph_level": "graph_optimization_level", "graph_levels": "graph_optimization_levels",
           "ort_levels": "graph_optimization_levels", "batch_timeout_ms": "batch_timeout_micros",
           "batch_timeouts_ms": "batch_timeouts_micros", "model_name": "model", "models": "model",
           "n_requests": "requests", "seconds_per_point": "min_duration_s",
           "measure_s": "min_duration_s"}


def _cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _parameter_cell(path: Path) -> list[tuple[str, str]]:
    """(name, annotation) of every assignment in the notebook's ``parameters`` cell, in order."""
    cell = next(c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return [(node.target.id, ast.unparse(node.annotation)) for node in tree.body if isinstance(node, ast.AnnAssign)]


def test_every_notebook_has_a_parameters_class():
    assert sorted(registered()) == sorted(p.stem for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_parameters_cell_and_its_class_name_the_same_fields_in_order(path):
    cls = parameters_class(path.stem)
    assert [name for name, _ in _parameter_cell(path)] == cls.names()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_defaults_and_every_profile_pass_the_checks(path):
    defaults = {}
    cell = next(c for c in _cells(path) if "parameters" in c.get("metadata", {}).get("tags", []))
    exec("".join(cell["source"]), {}, defaults)  # noqa: S102 (our own notebook's literals)
    from_globals(path.stem, defaults)
    for profile in PROFILES:
        from_globals(path.stem, {**defaults, **profile_parameters(path, profile)})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_code_cell_raises_or_checks_parameters_itself(path):
    cells = _cells(path)
    second = "".join(cells[1]["source"])
    assert f'kit.report.parameters.from_globals("{path.stem}", globals())' in second
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%")))
        for node in ast.walk(tree):
            assert not isinstance(node, ast.Raise), f"{path.stem} code cell {i} raises"
            if isinstance(node, ast.Name):
                assert node.id != "ConfigError", f"{path.stem} code cell {i} names ConfigError"
            if isinstance(node, ast.Attribute):
                assert node.attr != "ConfigError", f"{path.stem} code cell {i} names ConfigError"


def test_one_name_one_type_and_no_retired_spelling_across_notebooks():
    seen: dict[str, tuple[str, str]] = {}
    for path in NOTEBOOKS:
        for name, annotation in _parameter_cell(path):
            assert name not in RETIRED, f"{path.stem} uses {name!r}; the kit's name for it is {RETIRED[name]!r}"
            # one value or a list of values to try: the same idea either way (a thread count, say)
            if name in seen and "list" not in (annotation, seen[name][0]):
                assert seen[name][0] == annotation, (f"{name} is {annotation} in {path.stem} but "
                                                     f"{seen[name][0]} in {seen[name][1]}")
            seen[name] = (annotation, path.stem)
    for cls in registered().values():
        for field in dataclasses.fields(cls):
            assert field.name not in RETIRED, f"{cls.__name__}.{field.name} is a retired spelling"


def test_no_kit_config_uses_a_retired_spelling():
    import kit

    for module in Path(kit.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(d, "id", "") == "dataclass" or
                                                      getattr(getattr(d, "func", None), "id", "") == "dataclass"
                                                      for d in node.decorator_list):
                for stmt in node.body:
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        assert stmt.target.id not in RETIRED, f"{module.name}: {node.name}.{stmt.target.id}"


def test_a_bad_value_names_the_parameter_and_what_was_expected():
    values = {"model": "digits_cnn", "data": "", "input_shapes": {}, "value_ranges": {}, "engines": ["onnxruntime"],
              "batch_sizes": [1, 0], "intra_op_num_threads": 2,
              "min_duration_s": 0.5, "rounds": 3, "monitor_requests": 1}
    with pytest.raises(ConfigError, match=r"batch_sizes\[1\] must be an int >= 1, got 0"):
        from_globals("00_engines", values)
    with pytest.raises(ConfigError, match="needs the parameters"):
        from_globals("00_engines", {"model": "x"})
    with pytest.raises(ConfigError, match="no parameters are declared"):
        from_globals("99_nothing", values)
    config = from_globals("00_engines", {**values, "batch_sizes": [1, 8]})
    assert config.batch_sizes == (1, 8) and config.to_dict()["batch_sizes"] == [1, 8]


def test_list_checks_refuse_strings_repeats_and_emptiness():
    check = list_of(positive_int)
    for bad in ("12", [], [1, 1], [1, True]):
        with pytest.raises(ConfigError):
            check("sizes", bad)
    with pytest.raises(ConfigError, match="one of"):
        one_of("a", "b")("mode", "c")


def test_profiles_live_beside_the_notebooks():
    assert (NOTEBOOK_DIR / "profiles").is_dir()


def test_input_shapes_and_value_ranges_are_checked():
    from kit.report.parameters import ranges, shapes

    shapes("input_shapes", {"x": [1, 3, 640, 640]})
    ranges("value_ranges", {"sr": [16000, 16000]})
    for bad in ({"x": [1, 0]}, {"x": "1,3"}, ["x"]):
        with pytest.raises(ConfigError, match="input_shapes"):
            shapes("input_shapes", bad)
    for bad in ({"sr": [2, 1]}, {"sr": [1]}, {"sr": "16000"}):
        with pytest.raises(ConfigError, match="value_ranges"):
            ranges("value_ranges", bad)

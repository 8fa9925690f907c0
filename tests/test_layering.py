"""The kit's rooms: which subpackage may import which, checked from the source, lazy imports included.

A cycle between subpackages (``engines`` importing ``serve`` importing ``engines``) makes every
change ripple both ways and forces imports into function bodies to dodge import-time errors;
so the check reads every ``import`` statement, at module level or inside a function.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import kit

KIT = Path(kit.__file__).parent
# Top-level modules every room may use: they import nothing above the standard library and each other.
FOUNDATION = {"errors", "config", "specs", "artifacts", "hashing", "_quiet"}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "kit" and len(parts) > 1 else None


def _imports() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in KIT.rglob("*.py"):
        relative = path.relative_to(KIT.parent).with_suffix("")
        source_room = relative.parts[1] if len(relative.parts) > 1 else None
        if source_room in (None, "__init__"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                room = _room(name)
                if room and room != source_room:
                    edges[source_room.removesuffix(".py")].add(room)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_among_subpackages():
    cycle = _cycle(_imports())
    assert cycle is None, f"import cycle among kit's rooms: {' -> '.join(cycle)}"


def test_foundation_modules_import_no_room():
    edges = _imports()
    rooms = {p.name for p in KIT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    for module in FOUNDATION:
        leaked = edges.get(module, set()) & rooms
        assert not leaked, f"kit.{module} is a foundation module but imports {sorted(leaked)}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None

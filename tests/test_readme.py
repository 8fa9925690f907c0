"""The README's API screen runs as written, and what it claims (a cache that hits) is true."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_screen() -> str:
    text = README.read_text()
    section = text.split("## The Python API in one screen", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's API screen has no python block"
    return match.group(1)


@pytest.mark.slow
def test_readme_api_screen_runs_and_its_cache_hits():
    namespace: dict = {"__name__": "readme"}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(_api_screen(), str(README), "exec"), namespace)  # noqa: S102 (our own README)
    stats = namespace["cache"].stats()
    queries = namespace["result"].summary()["queries"]
    assert queries > 10
    assert stats["hits"] >= queries - 8, f"the README's cache hit {stats['hits']} of {queries}: {out.getvalue()}"
    assert "answered from the cache" in out.getvalue()


def test_readme_speaks_to_users_not_to_the_tracker():
    assert not re.search(r"\bissues? \d+\b|#\d{1,3}\b", README.read_text(), re.I), \
        "the README mentions issue numbers; say what works instead"

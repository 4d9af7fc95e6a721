"""Every Python block in README.md and docs/ runs (on the CPU), so the docs cannot drift.

A block that cannot run alone says so on its first line, ``# fragment: <why>`` (it needs the
reader's own model and data, a GPU, a cluster, ...); it is still compiled, so it is at least
valid Python. Blocks of one page run in order in one namespace, as a reader would paste them.
Each page runs in its own directory under ``tmp_path``.
"""
from __future__ import annotations

import os
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FRAGMENT = "# fragment:"


def blocks(page: pathlib.Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [(text[:m.start()].count("\n") + 2, m.group(1)) for m in BLOCK.finditer(text)]


PAGES_WITH_CODE = [p for p in PAGES if blocks(p)]


def test_every_page_with_python_is_checked():
    assert {p.name for p in PAGES_WITH_CODE} >= {"README.md"}


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code in blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        compiled = compile(code, where, "exec")
        if code.lstrip().startswith(FRAGMENT):
            reason = code.lstrip().splitlines()[0][len(FRAGMENT):].strip()
            assert reason, f"{where}: a fragment says why it cannot run alone"
            continue
        assert ".cuda()" not in code, f"{where}: runnable blocks are device-agnostic"
        exec(compiled, namespace)

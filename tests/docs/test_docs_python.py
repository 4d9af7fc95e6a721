"""Every Python block in README.md and docs/ runs (on the CPU), so the docs cannot drift.

A block that cannot run alone says so on its first line, ``# fragment: <why>`` (it needs the
reader's own model and data, a GPU, a cluster, ...); it is still compiled, so it is at least
valid Python. Blocks of one page run in order in one namespace, as a reader would paste them,
in a fresh interpreter (FFCV's numba objects raise in their finalizers when collected later in
a shared process) whose working directory is under ``tmp_path``.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

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


RUNNER = """
import json, sys
namespace = {"__name__": "__docs__"}
for where, code in json.load(open(sys.argv[1])):
    exec(compile(code, where, "exec"), namespace)
"""


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.name)
def test_python_blocks_run(page, tmp_path):
    runnable = []
    for line, code in blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        compile(code, where, "exec")   # every block, fragments too, is valid Python
        if code.lstrip().startswith(FRAGMENT):
            reason = code.lstrip().splitlines()[0][len(FRAGMENT):].strip()
            assert reason, f"{where}: a fragment says why it cannot run alone"
            continue
        assert ".cuda()" not in code, f"{where}: runnable blocks are device-agnostic"
        runnable.append((where, code))
    if not runnable:
        return
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps(runnable))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{page.name}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"

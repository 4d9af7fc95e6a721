"""The choose stage's state: one selector state per selecting phase and the fallback count."""
from __future__ import annotations

import pytest
import torch

import smartloader
from smartloader.errors import StateError
from smartloader.selection.choose import Chooser
from resume_harness import assert_resumes, assert_same

PHASES = smartloader.load_config({"phases": [
    {"name": "sb", "steps": 4, "selection": "selective_backprop", "beta": 1.0, "window": 10},
    {"name": "top", "steps": 4, "selection": "topk"},
    {"name": "rank", "selection": "ranked", "beta": 2.0}]}).resolve_phases()


def _chooser():
    return Chooser(PHASES), torch.Generator().manual_seed(3)


def _step(run, i, _):
    chooser, gen = run
    phase = PHASES[(i // 2) % 3]
    scores = torch.cos(torch.arange(9.0) * (i + 1))
    if i % 5 == 4:
        scores[2] = float("nan")                           # a non-finite pool: uniform draw
    return chooser.choose(scores, 4, phase, gen), int(chooser.fallbacks)


def test_chooser_resumes_exactly():
    run = assert_resumes(_chooser, 18, 7, _step)
    assert run.full[-1][1] == 3                            # the fallbacks were counted
    assert set(run.state["selectors"]) == {"sb", "top", "rank"}


@pytest.mark.parametrize("path, value, message", [
    (("fallbacks",), -1, "state.selection.fallbacks: must be an integer >= 0, got -1"),
    (("fallbacks",), torch.tensor(2), "state.selection.fallbacks: must be an integer >= 0"),
    (("selectors",), {}, "state.selection.selectors: missing keys ['rank', 'sb', 'top']"),
    (("selectors", "top"), {"x": 1}, "state.selection.selectors.top: unknown keys ['x']"),
    (("selectors", "sb", "window"), 11, "state.selection.selectors.sb.window: saved 11, "
     "this selector has 10"),
])
def test_chooser_state_is_checked_before_anything_changes(path, value, message):
    chooser, gen = _chooser()
    for i in range(3):
        _step((chooser, gen), i, None)
    before = chooser.state_dict()
    bad = _chooser()[0].state_dict()
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(StateError) as info:
        chooser.load_state_dict(bad)
    assert str(info.value).startswith(message), str(info.value)
    assert_same(chooser.state_dict(), before)

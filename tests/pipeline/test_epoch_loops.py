"""Epoch loops: total_epochs, the steps/epochs helpers, the total_steps = epochs * len(loader)
mistake, and default phases on a short run."""
from __future__ import annotations

import logging

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import smartloader
from smartloader.errors import ConfigError


def _setup(n=640, batch=16):
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    return DataLoader(ds, batch_size=batch), model


def _run(loader, epochs):
    lens, steps, phases = [], 0, []
    for _ in range(epochs):
        lens.append(len(loader))
        for _ in loader:
            steps += 1
            phases.append(loader.stats.phase)
    return lens, steps, phases


def test_total_epochs_derives_total_steps_and_len_agrees(caplog):
    dl, model = _setup()
    loader = smartloader.wrap(dl, model, {"total_epochs": 10})
    assert loader.config.total_steps == smartloader.steps_for_epochs(dl, 10) == 217
    assert [(p.name, p.start, p.stop) for p in loader.phases] == [
        ("warmup", 0, 11), ("select", 11, 195), ("cooldown", 195, 217)]
    with caplog.at_level(logging.WARNING, logger="smartloader"):
        lens, steps, phases = _run(loader, 10)
    assert steps == sum(lens) == 217 and phases[-1] == "cooldown"
    assert phases.count("warmup") == 11 and phases.count("cooldown") == 22
    assert not [r for r in caplog.records if "past total_steps" in r.getMessage()]


def test_total_epochs_resumes_with_the_same_derived_config():
    dl, model = _setup()
    a = smartloader.wrap(dl, model, {"total_epochs": 3})
    it = iter(a)
    next(it)
    state = a.state_dict()
    b = smartloader.wrap(dl, model, {"total_epochs": 3})
    b.load_state_dict(state)   # the derived config matches: accepted
    assert b.config.total_steps == a.config.total_steps
    c = smartloader.wrap(dl, model, {"total_epochs": 4})
    with pytest.raises(ValueError, match="state.config: saved with a different configuration"):
        c.load_state_dict(state)


def test_the_natural_total_steps_guess_warns_which_phase_is_lost(caplog):
    dl, model = _setup()
    with caplog.at_level(logging.WARNING, logger="smartloader"):
        smartloader.wrap(dl, model, {"total_steps": 10 * len(dl)})
    msg = [r.getMessage() for r in caplog.records if "x len(loader)" in r.getMessage()]
    assert len(msg) == 1
    assert "total_steps 400 is 10 x len(loader), but 10 epoch(s) of 40 wrapped batches yield " \
        "only 210 steps" in msg[0]
    assert "phase 'cooldown' (steps 360-399) is never reached" in msg[0]
    assert "set total_epochs: 10 instead" in msg[0]


def test_epochs_for_steps_reaches_the_cooldown():
    dl, model = _setup()
    epochs = smartloader.epochs_for_steps(dl, 400)
    assert epochs == 19
    loader = smartloader.wrap(dl, model, {"total_steps": 400})
    lens, steps, phases = _run(loader, epochs)
    assert steps >= 400 and phases[399] == "cooldown"
    assert smartloader.epochs_for_steps(40, 400) == 19   # batches per epoch as an int


def test_total_epochs_needs_a_length_and_excludes_total_steps():
    _, model = _setup()
    batches = type("Gen", (), {"__iter__": lambda self: iter([])})()
    with pytest.raises(ConfigError, match="^total_epochs: SmartLoader derives total_steps from "
                                          "len\\(loader\\), and the wrapped Gen has no len"):
        smartloader.wrap(batches, model, {"total_epochs": 2})
    with pytest.raises(ConfigError, match="total_steps, total_epochs: give one, not both"):
        smartloader.load_config({"total_epochs": 2, "total_steps": 10})


@pytest.mark.parametrize("total, phases", [
    (1, [("select", 0, 1)]),
    (9, [("select", 0, 8), ("cooldown", 8, 9)]),
    (20, [("warmup", 0, 1), ("select", 1, 18), ("cooldown", 18, 20)]),
])
def test_default_phases_shrink_to_a_short_run(total, phases):
    dl, model = _setup(n=64)
    loader = smartloader.wrap(dl, model, total_steps=total)
    assert [(p.name, p.start, p.stop) for p in loader.phases] == phases


def test_written_phases_under_one_step_still_fail():
    with pytest.raises(ConfigError, match=r"phases\[0\]\.fraction: 0\.05 of total_steps 9 is "
                                          r"less than one step"):
        smartloader.load_config({"total_steps": 9, "phases": [
            {"name": "w", "fraction": 0.05}, {"name": "s", "selection": "ranked"}]})

"""Run N steps == run N/2, save, rebuild everything, load, run N/2 — batch for batch."""
import pytest
import torch

import smartloader
from helpers import epoch_loader, trainable_model

CFG = {"seed": 5, "total_steps": 60, "pool_factor": 3, "phases": [
    {"name": "warmup", "steps": 7, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0},
    {"name": "cooldown", "fraction": 0.15, "selection": "uniform"}]}


def _build(workers=0):
    model, opt = trainable_model()
    loader = epoch_loader(workers=workers)
    return model, opt, smartloader.wrap(loader, model, CFG)


def _train(model, opt, loader, steps, record):
    """A user's loop: epochs with set_epoch, a real SGD step on every batch."""
    while len(record) < steps:
        loader.set_epoch(loader.epoch)
        for images, labels, index, *_ in loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            record.append((index.clone(), loader.stats.phase))
            if len(record) == steps:
                return


@pytest.mark.parametrize("cut", [23, 31, 50])
def test_resume_equals_uninterrupted(cut):
    total = 70  # crosses phases, several epochs, and total_steps (60)
    model, opt, loader = _build()
    full: list = []
    _train(model, opt, loader, total, full)

    model, opt, loader = _build()
    first: list = []
    _train(model, opt, loader, cut, first)
    saved = {"model": model.state_dict(), "opt": opt.state_dict(),
             "loader": loader.state_dict()}

    model, opt, loader = _build()  # fresh objects, as after a restart
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    loader.load_state_dict(saved["loader"])
    assert loader.state_dict() == saved["loader"] or loader.state_dict()["step"] == cut
    second = list(first)
    _train(model, opt, loader, total, second)

    assert [p for _, p in second] == [p for _, p in full]
    for step, ((a, _), (b, _)) in enumerate(zip(second, full)):
        assert torch.equal(a, b), f"batch {step} differs after resuming at {cut}"
    assert {p for _, p in full} == {"warmup", "select", "cooldown"}


def test_resume_with_workers_and_len():
    model, opt, loader = _build(workers=2)
    first: list = []
    _train(model, opt, loader, 12, first)
    state = loader.state_dict()
    expected_len = len(loader)
    _, _, fresh = _build(workers=2)
    fresh.load_state_dict(state)
    assert len(fresh) == expected_len
    assert fresh.step == 12 and fresh.epoch == state["epoch"]


def test_load_state_dict_is_strict():
    _, _, loader = _build()
    state = loader.state_dict()
    with pytest.raises(ValueError, match="unknown keys \\['extra'\\]"):
        loader.load_state_dict({**state, "extra": 1})
    with pytest.raises(ValueError, match="missing keys \\['step'\\]"):
        loader.load_state_dict({k: v for k, v in state.items() if k != "step"})
    with pytest.raises(ValueError, match="state.version"):
        loader.load_state_dict({**state, "version": 99})
    other = {**state, "config": {**state["config"], "pool_factor": 4}}
    with pytest.raises(ValueError, match="pool_factor: saved 4, now 3"):
        loader.load_state_dict(other)


def test_ranks_seed_the_generator_differently():
    from smartloader.common.epochs import mix_seed as _mix_seed
    seeds = {_mix_seed(0, e, r) for e in range(4) for r in range(4)}
    assert len(seeds) == 16

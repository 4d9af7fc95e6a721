"""Run N steps == run N/2, save, rebuild everything, load, run N/2 — batch for batch.

Every configuration of SmartLoader that holds state resumes through the one harness
(``tests/resume_harness.py``). Replay, the resolution schedule and the strategy mix have
their own resume tests next to their other tests.
"""
import pytest
import torch

import smartloader
from helpers import epoch_loader, trainable_model
from resume_harness import assert_resumes, loader_build, steps_of, train_step

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
    run = assert_resumes(loader_build(CFG), total, cut, train_step)
    assert run.state["step"] == cut
    assert [p for p, _ in steps_of(run.resumed)] == [p for p, _ in steps_of(run.full)]
    assert {p for p, _ in steps_of(run.full)} == {"warmup", "select", "cooldown"}


def _phases(selection, **extra):
    return [{"name": "warmup", "steps": 4, "selection": "uniform"},
            {"name": "select", "selection": selection, **extra}]


#: one configuration per stateful part of SmartLoader (each with a selection phase)
CONFIGS = {
    "default": {"total_steps": 40},
    "history": {"index_key": 2, "scorer": {"type": "history", "max_age": 6},
                "phases": _phases("ranked")},
    "proxy": {"scorer": {"type": "proxy", "refresh_every": 3, "bank": 32},
              "phases": _phases("ranked")},
    "selective_backprop": {"phases": _phases("selective_backprop", beta=2.0, window=24)},
    "topk": {"phases": _phases("topk")},
    "noisy_guard": {"index_key": 2, "noisy_guard": {"percentile": 0.8, "patience": 2},
                    "phases": _phases("ranked")},
    "mixup": {"batch_transform": {"type": "mixup", "alpha": 0.4, "num_classes": 2},
              "phases": _phases("ranked")},
    "cutmix": {"batch_transform": {"type": "cutmix", "num_classes": 2},
               "phases": _phases("ranked")},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
# 6: mid-epoch, selecting; 13: (most configs) right after an epoch's last batch, so the
# resumed epoch has nothing left to yield
@pytest.mark.parametrize("cut", [6, 13])
def test_every_stateful_part_resumes(name, cut):
    cfg = {"seed": 2, "pool_factor": 3, **CONFIGS[name]}
    run = assert_resumes(loader_build(cfg), 26, cut, train_step)
    assert "select" in {p for p, _ in steps_of(run.full)}
    assert run.state["step"] == cut


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

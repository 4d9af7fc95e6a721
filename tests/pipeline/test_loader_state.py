"""SmartLoader's state is checked entry by entry: a tampered entry is refused with a
:class:`StateError` naming its key path, the loader is left as it was, and it still
resumes exactly from a good state afterwards."""
from __future__ import annotations

import copy

import pytest
import torch

from smartloader.errors import StateError
from resume_harness import assert_resumes, assert_same, loader_build, save_load, train_step

#: every stage holds state: history scorer, noisy guard, Selective-Backprop window, MixUp
#: generator, replay memory with one owed replay step
CFG = {"seed": 4, "pool_factor": 3, "total_steps": 60, "index_key": 2,
       "scorer": {"type": "history"},
       "noisy_guard": {"percentile": 0.8, "patience": 2},
       "batch_transform": {"type": "mixup", "alpha": 0.4, "num_classes": 2},
       "replay": {"capacity": 20, "k": 1},
       "phases": [{"name": "warmup", "steps": 3, "selection": "uniform"},
                  {"name": "select", "selection": "selective_backprop", "beta": 1.0,
                   "window": 16}]}
SPLIT = 11   # mid-epoch, in selection, right after a fresh batch (a replay step is owed)
STEPS = 20
DELETE, ADD = object(), object()


def _tampered(state, path, value):
    """A copy of ``state`` with the entry at dotted ``path`` set to ``value`` (or deleted,
    or, with ADD, a new entry ``path`` = 1)."""
    out = copy.copy(state)
    node, keys = out, path.split(".")
    for key in keys[:-1]:
        node[key] = copy.copy(node[key])
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = 1 if value is ADD else value
    return out


def _nan_at_0(t):
    t = t.clone()
    t[0] = float("nan")
    return t


u8 = torch.uint8
BAD = [
    # the cursor
    ("version", 1, "state.version: saved 1, this smartloader reads 3"),
    ("version", 2, "state.version: saved 2, this smartloader reads 3"),
    ("version", "2", "state.version: saved '2'"),
    ("extra", ADD, "state: unknown keys ['extra'] are unexpected"),
    ("scoring", DELETE, "state: missing keys ['scoring']"),
    ("step", -1, "state.step: must be an integer >= 0, got -1"),
    ("step", float(SPLIT), f"state.step: must be an integer >= 0, got {float(SPLIT)} (float)"),
    ("step", True, "state.step: must be an integer >= 0, got True"),
    ("epoch", "0", "state.epoch: must be an integer >= 0, got '0' (str)"),
    ("consumed", -1, "state.consumed: must be an integer >= 0"),
    ("epoch_start_step", SPLIT + 1, f"state.epoch_start_step: must be <= state.step ({SPLIT})"),
    ("short_pools", -3, "state.short_pools: must be an integer >= 0"),
    ("generator", None, "state.generator: a state saved mid-epoch"),
    ("generator", torch.zeros(5056), "state.generator: must be a torch.Generator state (a 1-D "
     "uint8 tensor), got a tensor of dtype float32 and shape (5056,)"),
    ("generator", torch.zeros(2, 2528, dtype=u8), "state.generator: must be a torch.Generator"),
    ("generator", torch.zeros(16, dtype=u8), "state.generator: not a state of a cpu "
     "torch.Generator"),
    ("generator_device", 0, "state.generator_device: must be None or a device name, got 0"),
    ("generator_device", "gpu0", "state.generator_device: must be a device name"),
    ("generator_device", None, "state.generator_device: must name the device"),
    ("config", [], "state.config: must be a dict"),
    ("config.seed", 5, "state.config: saved with a different configuration (seed: saved 5, "
     "now 4)"),
    # the process layout and the wrapped loader's own state
    ("world_size", 2, "state.world_size: saved with 2 process(es), this run has 1. Each rank"),
    ("world_size", 0, "state.world_size: must be an integer >= 1, got 0"),
    ("world_size", "1", "state.world_size: must be an integer >= 1, got '1' (str)"),
    ("rank", 1, "state.rank: must be an integer in [0, 0], got 1"),
    ("rank", -1, "state.rank: must be an integer in [0, 0], got -1"),
    ("loader", {"samples_yielded": 3}, "state.loader: the state holds the wrapped loader's own "
     "state"),
    # scoring
    ("scoring", [], "state.scoring: must be a dict, got a list of length 0"),
    ("scoring.extra", ADD, "state.scoring: unknown keys ['extra']"),
    ("scoring.forwards", -1, "state.scoring.forwards: must be an integer >= 0"),
    ("scoring.skipped", 2.5, "state.scoring.skipped: must be an integer >= 0"),
    ("scoring.noisy_guard", None, "state.scoring.noisy_guard: saved with a different config"),
    ("scoring.noisy_guard.streak", ("fn", lambda t: t.float()),
     "state.scoring.noisy_guard.streak: must be a tensor of dtype int32 and shape (n,)"),
    ("scoring.noisy_guard.streak", ("fn", lambda t: t - 5),
     "state.scoring.noisy_guard.streak: values must be >= 0"),
    ("scoring.noisy_guard.patience", 3,
     "state.scoring.noisy_guard.patience: saved 3, this guard has 2"),
    ("scoring.noisy_guard.percentile", 0.9, "state.scoring.noisy_guard.percentile: saved 0.9"),
    ("scoring.scorer", {}, "state.scoring.scorer: missing keys"),
    ("scoring.scorer.loss", ("fn", lambda t: t.double()),
     "state.scoring.scorer.loss: must be a tensor of dtype float32"),
    ("scoring.scorer.loss", ("fn", _nan_at_0), "state.scoring.scorer.loss: must hold finite"),
    ("scoring.scorer.seen", ("fn", lambda t: t[:-1]),
     "state.scoring.scorer.seen: must be a tensor of dtype int64 and shape"),
    ("scoring.scorer.seen", ("fn", lambda t: t - 3),
     "state.scoring.scorer.seen: values must be >= -1"),
    ("scoring.scorer.step", -1, "state.scoring.scorer.step: must be an integer >= 0"),
    ("scoring.scorer.default", "mean",
     "state.scoring.scorer.default: saved 'mean', this history scorer has 'max'"),
    ("scoring.scorer.max_age", 3, "state.scoring.scorer.max_age: saved 3"),
    # selection
    ("selection.fallbacks", -1, "state.selection.fallbacks: must be an integer >= 0"),
    ("selection.selectors", {}, "state.selection.selectors: missing keys ['select']"),
    ("selection.selectors.other", ADD, "state.selection.selectors: unknown keys ['other']"),
    ("selection.selectors.select.window", 8,
     "state.selection.selectors.select.window: saved 8, this selector has 16"),
    ("selection.selectors.select.beta", 2.0,
     "state.selection.selectors.select.beta: saved 2.0, this selector has 1.0"),
    ("selection.selectors.select.ring", torch.zeros(8),
     "state.selection.selectors.select.ring: must be a tensor of dtype float32 and shape (16,)"),
    ("selection.selectors.select.ring", ("fn", _nan_at_0),
     "state.selection.selectors.select.ring: must not hold NaN"),
    ("selection.selectors.select.pos", 16,
     "state.selection.selectors.select.pos: must be an integer in [0, 15], got 16"),
    ("selection.selectors.select.filled", 17,
     "state.selection.selectors.select.filled: must be an integer in [0, 16], got 17"),
    # transform
    ("transform.generator", None,
     "state.transform.generator: saved with a different batch_transform config"),
    ("transform.generator", torch.zeros(5056, dtype=u8),
     "state.transform.generator: not a state of a cpu torch.Generator"),
    ("transform.x", ADD, "state.transform: unknown keys ['x']"),
    # replay
    ("replay", {}, "state.replay: missing keys"),
    ("replay.pending", -1, "state.replay.pending: must be an integer in [0, 1], got -1"),
    ("replay.pending", 2, "state.replay.pending: must be an integer in [0, 1], got 2"),
    ("replay.pending", 0, "state.replay.template: the fresh batch"),
    ("replay.template", None, "state.replay.template: the fresh batch"),
    ("replay.generator", "x", "state.replay.generator: must be a torch.Generator state"),
    ("replay.memory.extra", ADD, "state.replay.memory: unknown keys ['extra']"),
    ("replay.memory.capacity", 10,
     "state.replay.memory.capacity: saved 10, this memory has 20"),
    ("replay.memory.policy", "fifo", "state.replay.memory.policy: saved 'fifo', this memory "
     "has 'reservoir'"),
    ("replay.memory.priority", "epr", "state.replay.memory.priority: saved 'epr'"),
    ("replay.memory.alpha", [], "state.replay.memory.alpha: must be a dict"),
    ("replay.memory.seen", -5, "state.replay.memory.seen: must be an integer >= 0"),
    ("replay.memory.seen", 10,
     "state.replay.memory.losses: must be a tensor of dtype float32 and shape (10,)"),
    ("replay.memory.losses", ("fn", lambda t: t.double()),
     "state.replay.memory.losses: must be a tensor of dtype float32 and shape (20,)"),
    ("replay.memory.fields", {}, "state.replay.memory.fields: state.replay.memory.seen"),
    ("replay.memory.fields", [], "state.replay.memory.fields: must be a dict"),
    ("replay.memory.fields.input", torch.zeros(3, 1, 4, 4),
     "state.replay.memory.fields.input: has 3 rows, expected 20"),
    ("replay.memory.fields.input", [1, 2], "state.replay.memory.fields.input: must be a tensor"),
    ("replay.memory.generator", torch.zeros(5056),
     "state.replay.memory.generator: must be a torch.Generator state"),
]


def _bad_state(good, path, value):
    if isinstance(value, tuple) and value and value[0] == "fn":
        node = good
        for key in path.split("."):
            node = node[key]
        value = value[1](node)
    return _tampered(good, path, value)


@pytest.fixture(scope="module")
def good_state():
    """The state of a run saved at SPLIT (after a save/load round trip)."""
    run = loader_build(CFG)()
    it = iter(run[0])
    for i in range(SPLIT):
        train_step(run, i, next(it))
    state = save_load(run[0].state_dict())
    it.close()
    assert state["consumed"] > 0 and state["replay"]["pending"] == 1
    assert len(state["replay"]["memory"]["fields"]["input"]) == 20
    return state


@pytest.fixture(scope="module")
def used_loader():
    """A loader that ran 5 steps (its iterator closed): a refused state must leave it so."""
    run = loader_build(CFG)()
    it = iter(run[0])
    for i in range(5):
        train_step(run, i, next(it))
    it.close()
    return run[0]


@pytest.mark.parametrize("path, value, message", BAD, ids=[f"{i:02d}-{p}" for i, (p, _, _)
                                                           in enumerate(BAD)])
def test_a_tampered_entry_is_refused_by_its_key_path(good_state, used_loader, path, value,
                                                     message):
    before = save_load(used_loader.state_dict())
    bad = _bad_state(good_state, path, value)
    with pytest.raises(StateError) as info:
        used_loader.load_state_dict(bad)
    assert str(info.value).startswith(message), str(info.value)
    assert_same(save_load(used_loader.state_dict()), before, "state after a refused load")


def test_the_good_state_loads(good_state, used_loader):
    fresh = loader_build(CFG)()[0]
    fresh.load_state_dict(good_state)
    assert_same(save_load(fresh.state_dict()), good_state)


def test_resumes_exactly_after_refused_loads():
    """The resumed run is built, trained 5 steps on its own, refuses every bad state, then
    loads the good one: it still continues exactly as the uninterrupted run."""
    def try_bad_states(run, good):
        it = iter(run[0])
        for i in range(5):
            train_step(run, i, next(it))
        it.close()
        for path, value, _ in BAD:
            with pytest.raises(StateError):
                run[0].load_state_dict(_bad_state(good, path, value))

    assert_resumes(loader_build(CFG), STEPS, SPLIT, train_step, before_load=try_bad_states)


def test_a_state_is_not_a_dict():
    loader = loader_build(CFG)()[0]
    with pytest.raises(StateError, match=r"^state: must be a dict, got a list of length 0"):
        loader.load_state_dict([])


# -- on an accelerator ------------------------------------------------------------------------
def _cuda_model():
    from helpers import trainable_model
    model, _ = trainable_model()
    model = model.cuda()
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


GPU_CFG = {**CFG, "replay": {"capacity": 20, "k": 1, "device": "model"}}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resumes_exactly_on_cuda_after_refused_loads():
    """The selection generator, the replay memory and the Selective-Backprop window live
    on the GPU; bad states are refused there too, and the run resumes exactly."""
    def try_bad_states(run, good):
        assert good["generator_device"].startswith("cuda")
        assert good["replay"]["memory"]["fields"]["input"].is_cuda
        for path, value, _ in BAD:
            if path == "generator" and isinstance(value, torch.Tensor) and value.numel() == 16:
                continue                  # 16 bytes is the size of a CUDA generator's state
            with pytest.raises(StateError):
                run[0].load_state_dict(_bad_state(good, path, value))
        cpu_gen = _tampered(good, "generator", torch.Generator().get_state())
        with pytest.raises(StateError, match="^state.generator: not a state of a cuda"):
            run[0].load_state_dict(cpu_gen)

    assert_resumes(loader_build(GPU_CFG, model=_cuda_model), STEPS, SPLIT, train_step,
                   before_load=try_bad_states)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_state_saved_on_cuda_needs_the_model_there_to_resume():
    run = loader_build(CFG, model=_cuda_model)()
    it = iter(run[0])
    for i in range(SPLIT):
        train_step(run, i, next(it))
    state = save_load(run[0].state_dict())
    it.close()
    from helpers import trainable_model
    cpu = loader_build(CFG, model=trainable_model)()[0]
    cpu.load_state_dict(state)                  # the state itself is sound
    with pytest.raises(RuntimeError, match="saved on cuda:0, the model is now on cpu"):
        next(iter(cpu))

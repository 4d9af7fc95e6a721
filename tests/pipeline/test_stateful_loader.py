"""A wrapped loader that keeps its own position (torchdata's StatefulDataLoader).

SmartLoader nests the wrapped loader's ``state_dict()`` in its own and hands it back on
resume, so a *shuffled* loader, whose order is not a function of the epoch, continues
exactly and no consumed batch is read twice.
"""
import logging

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

import smartloader
from smartloader import StateError
from helpers import PlantedDataset, trainable_model
from resume_harness import assert_resumes, assert_same, save_load, train_step

CFG = {"total_steps": 40, "pool_factor": 2, "seed": 3, "score_resolution": None,
       "phases": [{"name": "warmup", "steps": 4, "selection": "uniform"},
                  {"name": "select", "selection": "ranked", "beta": 1.0},
                  {"name": "cooldown", "steps": 8, "selection": "uniform"}]}


class CountingDataset(PlantedDataset):
    """PlantedDataset that counts the items read (in this process)."""

    def __init__(self, n: int = 96):
        super().__init__(n=n, hard_every=5)
        self.reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def shuffled(seed: int, workers: int = 0, n: int = 96) -> StatefulDataLoader:
    """A shuffled StatefulDataLoader: its order comes from a generator that runs on from
    epoch to epoch, so re-reading an epoch from a fresh loader would give other batches."""
    return StatefulDataLoader(CountingDataset(n), batch_size=8, shuffle=True,
                              generator=torch.Generator().manual_seed(seed),
                              num_workers=workers)


def builder(workers: int = 0):
    """Builds for assert_resumes; the third build (the resumed run) shuffles with another
    seed, so only the nested loader state can make it continue exactly."""
    calls = []

    def build():
        calls.append(1)
        net, opt = trainable_model()
        seed = 7 if len(calls) < 3 else 999
        return smartloader.wrap(shuffled(seed, workers), net, CFG), net, opt
    return build


# 96 samples in batches of 8: epoch 0 is 4 uniform steps then 4 selection steps (8 steps),
# epoch 1 is 6 selection steps (steps 8-13)
@pytest.mark.parametrize("split, steps", [(5, 8), (10, 14)], ids=["epoch0", "epoch1"])
def test_a_shuffled_stateful_loader_resumes_its_epoch_exactly(split, steps):
    """torchdata restores the permutation of the epoch in progress (the resumed run's
    loader even shuffles with another seed); see the next test for the epochs after it."""
    res = assert_resumes(builder(), steps=steps, split=split, step_fn=train_step)
    assert res.state["loader"] is not None          # the wrapped loader's state is nested
    assert res.state["consumed"] > 0
    assert res.full[-1][1][0] == "select"


def seeded_by_epoch(workers: int = 0) -> StatefulDataLoader:
    """A StatefulDataLoader whose order is a function of (seed, epoch)."""
    ds = CountingDataset()
    return StatefulDataLoader(ds, batch_size=8, num_workers=workers,
                              sampler=DistributedSampler(ds, num_replicas=1, rank=0, seed=5))


@pytest.mark.parametrize("split", [5, 17, 36], ids=["epoch0", "epoch2", "cooldown"])
def test_an_epoch_seeded_stateful_loader_resumes_exactly_over_epochs(split):
    def build():
        net, opt = trainable_model()
        return smartloader.wrap(seeded_by_epoch(), net, CFG), net, opt
    res = assert_resumes(build, steps=40, split=split, step_fn=train_step)
    assert res.state["loader"] is not None
    assert {p for p, _ in (extra for _, extra in res.full)} == {"warmup", "select", "cooldown"}


def test_with_workers_the_stateful_loader_resumes_exactly():
    def build():
        net, opt = trainable_model()
        return smartloader.wrap(seeded_by_epoch(workers=2), net, CFG), net, opt
    res = assert_resumes(build, steps=24, split=13, step_fn=train_step)
    assert res.state["loader"] is not None


def saved_after(inner, steps: int) -> dict:
    """The state of a SmartLoader over ``inner`` after ``steps`` trained steps (through a
    save/load round trip)."""
    net, opt = trainable_model()
    sl = smartloader.wrap(inner, net, CFG)
    it = iter(sl)
    for i in range(steps):
        train_step((sl, net, opt), i, next(it))
    state = save_load(sl.state_dict())
    it.close()
    return state


def test_resume_reads_no_consumed_batch_again():
    state = saved_after(shuffled(7), 7)
    consumed = state["consumed"]

    inner = shuffled(999)
    fresh = smartloader.wrap(inner, *trainable_model()[:1], CFG)
    fresh.load_state_dict(state)
    next(iter(fresh))
    # one more step reads at most one pool (pool_factor batches of 8), never the consumed ones
    assert consumed >= 4 and inner.dataset.reads <= 2 * 8


def test_without_a_nested_state_the_consumed_batches_are_re_read(caplog):
    """A state saved around a plain (deterministic) DataLoader resumes on a stateful one by
    re-reading, and says so."""
    state = saved_after(DataLoader(CountingDataset(), batch_size=8), 6)
    assert state["loader"] is None

    inner = StatefulDataLoader(CountingDataset(), batch_size=8)
    fresh = smartloader.wrap(inner, trainable_model()[0], CFG)
    with caplog.at_level(logging.INFO, logger="smartloader"):
        fresh.load_state_dict(state)
        next(iter(fresh))
    assert inner.dataset.reads >= state["consumed"] * 8
    assert "re-reads the" in caplog.text


def test_a_nested_state_needs_a_loader_that_can_load_it():
    net, _ = trainable_model()
    sl = smartloader.wrap(shuffled(7), net, CFG)
    it = iter(sl)
    next(it)
    state = sl.state_dict()
    it.close()
    plain = smartloader.wrap(DataLoader(CountingDataset(), batch_size=8), net, CFG)
    with pytest.raises(StateError, match=r"state\.loader: .* the wrapped DataLoader has no "
                                         r"load_state_dict\(\)"):
        plain.load_state_dict(state)


def test_state_taken_before_resuming_hands_the_loaded_loader_state_on():
    state = saved_after(shuffled(7), 5)
    fresh = smartloader.wrap(shuffled(999), trainable_model()[0], CFG)
    fresh.load_state_dict(state)
    again = save_load(fresh.state_dict())
    assert_same(again["loader"], state["loader"], "the nested state before resuming")


def test_set_epoch_to_another_epoch_drops_the_nested_position(caplog):
    state = saved_after(shuffled(7), 5)
    inner = shuffled(7)
    fresh = smartloader.wrap(inner, trainable_model()[0], CFG)
    fresh.load_state_dict(state)
    with caplog.at_level(logging.WARNING, logger="smartloader"):
        fresh.set_epoch(state["epoch"] + 1)
    assert "starts from its beginning" in caplog.text
    assert state["loader"]["_num_yielded"] > 0
    assert fresh.state_dict()["loader"]["_num_yielded"] == 0   # the fresh loader's own state
    inner.dataset.reads = 0
    n = sum(1 for _ in fresh)
    assert n == len(inner) // CFG["pool_factor"]        # a whole selection epoch, from its start
    assert inner.dataset.reads == len(inner.dataset)


def test_smartloader_is_a_distributed_checkpoint_stateful():
    from torch.distributed.checkpoint.stateful import Stateful
    net, _ = trainable_model()
    assert isinstance(smartloader.wrap(shuffled(7), net, CFG), Stateful)


def test_a_distributed_checkpoint_of_one_process_resumes_exactly(tmp_path):
    import torch.distributed.checkpoint as dcp

    def build():
        net, opt = trainable_model()
        return smartloader.wrap(shuffled(7), net, CFG), net, opt

    def steps(run, start, stop, it):
        return [train_step(run, i, b) and b[2].tolist() for i, b in zip(range(start, stop), it)]

    full = build()
    want = steps(full, 0, 8, iter(full[0]))
    first = build()
    it = iter(first[0])
    got = steps(first, 0, 5, it)
    dcp.save({"model": first[1].state_dict(), "loader": first[0].checkpoint},
             checkpoint_id=str(tmp_path / "ckpt"))
    it.close()
    second = build()
    target = {"model": second[1].state_dict(), "loader": second[0].checkpoint}
    dcp.load(target, checkpoint_id=str(tmp_path / "ckpt"))
    second[1].load_state_dict(target["model"])
    got += steps(second, 5, 8, iter(second[0]))
    assert got == want and len(want) == 8


def test_the_checkpoint_entry_checks_world_size_and_rank():
    net, _ = trainable_model()
    sl = smartloader.wrap(shuffled(7), net, CFG)
    entry = sl.checkpoint.state_dict()
    assert set(entry) == {"rank0", "world_size"} and entry["world_size"] == 1
    with pytest.raises(StateError, match="saved with world_size 4, this run has 1"):
        sl.checkpoint.load_state_dict({**entry, "world_size": 4})
    with pytest.raises(StateError, match=r"no state for rank 0 \(keys \['rank1'\]\)"):
        sl.checkpoint.load_state_dict({"rank1": entry["rank0"], "world_size": 1})
    with pytest.raises(StateError, match="expected the entry saved from loader.checkpoint"):
        sl.checkpoint.load_state_dict(sl.state_dict())
    sl.checkpoint.load_state_dict(entry)     # the real entry loads

"""SharedValue: a magnitude set in the main process reaches running DataLoader workers."""
import multiprocessing as mp
import os
import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from smartloader.common.shared_value import SharedValue


class MagnitudeReader:
    """A transform that reads the shared magnitude on every sample."""

    def __init__(self, magnitude):
        self.magnitude = magnitude

    def __call__(self, index):
        return self.magnitude.get()


class ReportingDataset(Dataset):
    def __init__(self, n, transform):
        self.n, self.transform = n, transform

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return torch.tensor([self.transform(index), float(os.getpid())], dtype=torch.float64)


def test_get_set_and_repr():
    v = SharedValue(4.0)
    assert v.get() == 4.0 and v.is_shared
    v.set(6)
    assert v.get() == 6.0 and float(v) == 6.0 and repr(v) == "SharedValue(6.0)"


def _iterate_and_set(loader, value, new, switch_at):
    seen = []
    for i, batch in enumerate(loader):
        seen.append(batch[0, 0].item())
        if i == switch_at:
            value.set(new)
    return seen


@pytest.mark.parametrize("persistent", [False, True])
def test_workers_see_value_change_mid_epoch(persistent):
    value = SharedValue(4.0)
    loader = DataLoader(ReportingDataset(40, MagnitudeReader(value)), batch_size=1,
                        num_workers=2, persistent_workers=persistent, prefetch_factor=2)
    seen = _iterate_and_set(loader, value, 6.0, switch_at=1)
    assert seen[0] == 4.0
    # at most prefetch_factor * num_workers batches were fetched before the switch
    assert seen[10:] == [6.0] * 30
    if persistent:
        pids = set()
        value.set(5.0)
        for batch in loader:  # second epoch, same worker processes
            assert batch[0, 0].item() == 5.0
            pids.add(batch[0, 1].item())
        assert len(pids) == 2


def test_survives_pickling_into_spawned_worker():
    value = SharedValue(1.0)
    loader = DataLoader(ReportingDataset(24, MagnitudeReader(value)), batch_size=1,
                        num_workers=1, multiprocessing_context=mp.get_context("spawn"),
                        prefetch_factor=2)
    seen = _iterate_and_set(loader, value, 2.0, switch_at=0)
    assert seen[0] == 1.0 and seen[8:] == [2.0] * 16


def test_plain_pickle_copies_value():
    v = SharedValue(3.0)
    w = pickle.loads(pickle.dumps(v))
    assert w.get() == 3.0


def test_docstring_example():
    import doctest
    import smartloader.common.shared_value as module
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0

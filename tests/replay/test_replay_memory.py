"""ReplayMemory: insertion policies, sampling, dtype/device and byte accounting."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smartloader.replay import (OVERHEAD_BYTES_PER_SLOT, ReplayMemory, capacity_from, epr_priority,
                                last_writer)

# chi-square critical values at p = 0.001 (from tables), by degrees of freedom
CHI2_999 = {3: 16.27, 19: 43.82}


def batch(start, n):
    """n records whose 'index' runs from start; input is uint8 [2, 3] filled with the index."""
    index = torch.arange(start, start + n)
    return {"input": (index % 256).to(torch.uint8).view(n, 1, 1).expand(n, 2, 3).contiguous(),
            "index": index}


def stream(memory, total, batch_size):
    for start in range(0, total, batch_size):
        memory.add(batch(start, min(batch_size, total - start)))


def stored_indices(memory):
    return memory.sample(len(memory))[0]["index"].sort().values  # all, without replacement


@settings(max_examples=30, deadline=None)
@given(capacity=st.integers(1, 20), sizes=st.lists(st.integers(0, 30), max_size=12),
       policy=st.sampled_from(["fifo", "reservoir"]))
def test_capacity_never_exceeded_and_len_counts_filled_slots(capacity, sizes, policy):
    memory = ReplayMemory(capacity, policy=policy, seed=1)
    seen = 0
    for n in sizes:
        memory.add(batch(seen, n))
        seen += n
        assert len(memory) == min(seen, capacity) and memory.seen == seen
        if memory.fields is not None:
            assert memory._storage["index"].shape[0] == capacity
    if len(memory):
        kept = stored_indices(memory)
        assert kept.unique().numel() == len(memory)  # every stream item at most once
        assert int(kept.max()) < seen


def test_fifo_keeps_the_latest_samples():
    memory = ReplayMemory(7, policy="fifo")
    stream(memory, 50, batch_size=4)
    assert stored_indices(memory).tolist() == list(range(43, 50))
    # a batch larger than the memory keeps its own last items
    memory.add(batch(100, 10))
    assert stored_indices(memory).tolist() == list(range(103, 110))


def test_reservoir_fills_in_order_before_it_replaces():
    memory = ReplayMemory(5, policy="reservoir")
    assert memory.add(batch(0, 3)).tolist() == [0, 1, 2]
    memory.add(batch(3, 2))
    assert memory._storage["index"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("sizes", [[1] * 40, [3] * 13 + [1], [40], [7, 1, 32]])
def test_reservoir_batched_equals_one_at_a_time(sizes):
    one = ReplayMemory(6, policy="reservoir", seed=3)
    stream(one, 40, batch_size=1)
    batched = ReplayMemory(6, policy="reservoir", seed=3)
    start = 0
    for n in sizes:
        batched.add(batch(start, n))
        start += n
    assert torch.equal(one._storage["index"], batched._storage["index"])
    assert torch.equal(one._generator.get_state(), batched._generator.get_state())


@pytest.mark.slow
def test_reservoir_is_uniform_over_the_stream():
    """Inclusion counts over 1000 seeded trials: chi-square against capacity/N for each item."""
    total, capacity = 20, 5

    def chi2(policy, trials):
        counts = torch.zeros(total)
        for seed in range(trials):
            memory = ReplayMemory(capacity, policy=policy, seed=seed)
            stream(memory, total, batch_size=3)
            counts[memory._storage["index"]] += 1
        expected = trials * capacity / total
        return float(((counts - expected) ** 2 / expected).sum()), counts

    stat, counts = chi2("reservoir", trials=1000)
    assert counts.sum() == 1000 * capacity
    assert stat < CHI2_999[total - 1], (stat, counts)
    # the statistic can fail: the latest-only policy on the same stream is far from uniform
    assert chi2("fifo", trials=100)[0] > 10 * CHI2_999[total - 1]


def test_last_writer_keeps_the_later_item_per_slot():
    dest, src = last_writer(torch.tensor([2, -1, 0, 2, 0, 1]))
    assert dest.tolist() == [0, 1, 2] and src.tolist() == [4, 5, 3]


def test_add_returns_the_slot_of_each_item_or_minus_one():
    memory = ReplayMemory(3, policy="fifo")
    assert memory.add(batch(0, 5)).tolist() == [-1, -1, 2, 0, 1]


def test_dtype_shape_and_device_preserved():
    memory = ReplayMemory(4, device="cpu")
    record = {"input": torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8),
              "target": torch.tensor([1, 2, 3]),
              "half": torch.ones(3, 5, dtype=torch.float16)}
    memory.add(record)
    fields, slots, weights = memory.sample(3)
    assert fields["input"].dtype == torch.uint8 and fields["input"].shape == (3, 3, 8, 8)
    assert fields["target"].dtype == torch.int64 and fields["target"].shape == (3,)
    assert fields["half"].dtype == torch.float16
    assert memory._storage["input"].dtype == torch.uint8
    assert all(t.device.type == "cpu" for t in fields.values())
    assert slots.dtype == torch.int64 and weights.dtype == torch.float32
    # records come back intact: slot i holds batch item i
    assert torch.equal(fields["input"], record["input"][slots])


def test_add_rejects_a_different_dtype_or_shape():
    memory = ReplayMemory(4)
    memory.add({"x": torch.zeros(2, 3, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="do not match"):
        memory.add({"x": torch.zeros(2, 3, dtype=torch.float32)})
    with pytest.raises(ValueError, match="do not match"):
        memory.add({"x": torch.zeros(2, 4, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="batch"):
        memory.add({"x": torch.zeros(2, 3, dtype=torch.uint8), "y": torch.zeros(3)})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_storage_and_pinned_cpu_storage():
    memory = ReplayMemory(4, device="cuda")
    memory.add({"x": torch.zeros(2, 3, dtype=torch.uint8)})
    fields, _, weights = memory.sample(2)
    assert fields["x"].is_cuda and fields["x"].dtype == torch.uint8 and weights.is_cuda
    pinned = ReplayMemory(4, pin_memory=True)
    pinned.add({"x": torch.zeros(2, 3, dtype=torch.uint8)})
    assert pinned._storage["x"].is_pinned()


def test_memory_accounting_is_exact():
    memory = ReplayMemory(10)
    assert (memory.data_nbytes, memory.overhead_nbytes) == (0, 10 * OVERHEAD_BYTES_PER_SLOT)
    memory.add({"input": torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
                "target": torch.zeros(2, dtype=torch.int64),
                "w": torch.zeros(2, 4, dtype=torch.float32)})
    per_sample = 3 * 32 * 32 * 1 + 8 + 4 * 4
    assert memory.bytes_per_sample == per_sample
    assert memory.data_nbytes == 10 * per_sample
    assert memory.data_nbytes == sum(t.nbytes for t in memory._storage.values())
    assert memory.overhead_nbytes == memory._losses.nbytes == 40
    assert memory.nbytes == 10 * per_sample + 40


def test_capacity_from_samples_and_fractions():
    assert capacity_from(300, 60000) == 300
    assert capacity_from(0.05, 60000) == 3000
    assert capacity_from(0.29, 100) == 29          # rounded, not floored (0.29*100 = 28.99...)
    assert capacity_from(1e-9, 10) == 1
    assert capacity_from(1.0, 17) == 17
    for bad in (0, 1.5, 0.0, True):
        with pytest.raises(ValueError):
            capacity_from(bad, 100)
    with pytest.raises(ValueError, match="dataset size"):
        capacity_from(0.1)


def test_sample_without_replacement_when_possible():
    memory = ReplayMemory(8)
    memory.add(batch(0, 8))
    for _ in range(20):
        _, slots, _ = memory.sample(8)
        assert sorted(slots.tolist()) == list(range(8))
    _, slots, weights = memory.sample(20)  # more than stored: with replacement
    assert slots.numel() == 20 and torch.equal(weights, torch.ones(20))


def test_sample_errors():
    memory = ReplayMemory(4)
    with pytest.raises(RuntimeError, match="empty"):
        memory.sample(1)
    memory.add(batch(0, 2))
    with pytest.raises(ValueError):
        memory.sample(0)


def test_epr_draw_frequencies_follow_priorities():
    losses = torch.tensor([0.1, 0.5, 2.0, 5.0])
    memory = ReplayMemory(4, priority="epr", alpha=0.9, seed=7)
    memory.add(batch(0, 4), losses)
    draws = 8000
    counts = torch.bincount(torch.cat([memory.sample(1)[1] for _ in range(draws)]), minlength=4)
    p = epr_priority(losses, 0.9)
    expected = draws * p / p.sum()
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < CHI2_999[3], (counts, expected)


def test_unknown_losses_get_max_priority_and_update_losses_changes_them():
    memory = ReplayMemory(4, priority="epr", alpha=0.5)
    memory.add(batch(0, 3))
    assert torch.equal(memory.priorities(), torch.ones(3))
    memory.update_losses(torch.tensor([0, 2]), torch.tensor([0.0, 0.0]))
    assert torch.allclose(memory.priorities(), torch.tensor([0.5, 1.0, 0.5]))
    with pytest.raises(IndexError):
        memory.update_losses(torch.tensor([3]), torch.tensor([1.0]))  # slot 3 not filled


def test_sampled_weights_are_importance_weights_of_drawn_slots():
    losses = torch.tensor([0.0, 1.0, 3.0])
    memory = ReplayMemory(3, priority="epr", alpha=0.5)
    memory.add(batch(0, 3), losses)
    _, slots, weights = memory.sample(3)
    p = epr_priority(losses, 0.5)[slots]
    assert torch.allclose(weights, (1 / p) / (1 / p).mean())
    assert torch.isclose(weights.mean(), torch.tensor(1.0))


def test_memory_never_touches_global_rng():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    memory = ReplayMemory(3, priority="epr", alpha=0.5)
    stream(memory, 30, batch_size=4)
    memory.sample(2)
    assert torch.equal(before, torch.get_rng_state())

"""ReplayMemory state: strict round trip, and resume equality with a non-empty memory."""
import pytest
import torch

from smartloader.common.progress import Progress
from smartloader.replay import AlphaSchedule, ReplayMemory

TOTAL = 24


def make(policy):
    return ReplayMemory(6, policy=policy, priority="epr", alpha=AlphaSchedule(1.0, 0.0, "cosine"),
                        seed=11)


def run(memory, steps, log):
    """One-pass loop: add a fresh batch (with losses half the time), draw, update losses."""
    for step in steps:
        index = torch.arange(step * 3, step * 3 + 3)
        fresh = {"input": (index % 256).to(torch.uint8).view(3, 1).expand(3, 4).contiguous(),
                 "index": index}
        memory.add(fresh, losses=index.float() / 10 if step % 2 else None)
        fields, slots, weights = memory.sample(4, Progress(step, total_steps=TOTAL))
        memory.update_losses(slots, (fields["index"] % 7).float())
        log.append((fields["index"].clone(), slots.clone(), weights.clone()))


@pytest.mark.parametrize("policy", ["reservoir", "fifo"])
def test_resume_equals_uninterrupted_run(policy, tmp_path):
    straight, straight_log = make(policy), []
    run(straight, range(TOTAL), straight_log)

    first, resumed_log = make(policy), []
    run(first, range(TOTAL // 2), resumed_log)
    assert len(first) == 6                             # the memory is full when saved
    torch.save(first.state_dict(), tmp_path / "memory.pt")
    second = make(policy)
    second.load_state_dict(torch.load(tmp_path / "memory.pt"))
    run(second, range(TOTAL // 2, TOTAL), resumed_log)

    assert len(straight_log) == len(resumed_log) == TOTAL
    for (a_idx, a_slot, a_w), (b_idx, b_slot, b_w) in zip(straight_log, resumed_log):
        assert torch.equal(a_idx, b_idx) and torch.equal(a_slot, b_slot) and torch.equal(a_w, b_w)
    for name in ("input", "index"):
        assert torch.equal(straight._storage[name], second._storage[name])
    assert torch.equal(straight._losses, second._losses) and straight.seen == second.seen


def test_round_trip_of_a_partly_filled_memory():
    memory = make("reservoir")
    memory.add({"x": torch.arange(4, dtype=torch.uint8)}, losses=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    state = memory.state_dict()
    assert state["fields"]["x"].dtype == torch.uint8 and state["fields"]["x"].shape == (4,)
    assert state["seen"] == 4 and state["losses"].shape == (4,)
    restored = make("reservoir")
    restored.load_state_dict(state)
    assert len(restored) == 4 and restored.fields == memory.fields
    assert torch.equal(restored.priorities(Progress(0, total_steps=10)),
                       memory.priorities(Progress(0, total_steps=10)))
    # state is a copy: mutating the memory afterwards does not change the saved state
    memory.add({"x": torch.full((3,), 9, dtype=torch.uint8)})
    assert state["fields"]["x"].tolist() == [0, 1, 2, 3]


def test_state_of_an_empty_memory_round_trips():
    memory = make("fifo")
    restored = make("fifo")
    restored.add({"x": torch.zeros(2)})
    restored.load_state_dict(memory.state_dict())
    assert len(restored) == 0 and restored.fields is None


def test_state_size_is_as_documented():
    memory = make("fifo")
    memory.add({"x": torch.zeros(4, 10, dtype=torch.uint8), "y": torch.zeros(4)})
    state = memory.state_dict()
    tensor_bytes = sum(t.nbytes for t in state["fields"].values()) + state["losses"].nbytes
    assert tensor_bytes == len(memory) * (memory.bytes_per_sample + 4)
    assert state["generator"].nbytes == 5056


def test_load_state_dict_is_strict():
    memory = make("reservoir")
    memory.add({"x": torch.zeros(3)})
    good = memory.state_dict()
    with pytest.raises(KeyError, match="missing"):
        make("reservoir").load_state_dict({k: v for k, v in good.items() if k != "seen"})
    with pytest.raises(KeyError, match="unexpected"):
        make("reservoir").load_state_dict({**good, "extra": 1})
    with pytest.raises(ValueError, match="policy"):
        make("fifo").load_state_dict(good)
    with pytest.raises(ValueError, match="capacity"):
        ReplayMemory(7, seed=11).load_state_dict(good)
    with pytest.raises(ValueError, match="rows"):
        make("reservoir").load_state_dict({**good, "fields": {"x": torch.zeros(2)}})

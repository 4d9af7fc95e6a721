"""ReplayMemory state: strict round trip, and resume equality with a non-empty memory."""
import pytest
import torch

from smartloader.common.progress import Progress
from smartloader.errors import StateError
from smartloader.replay import AlphaSchedule, ReplayMemory
from resume_harness import assert_resumes, assert_same

TOTAL = 24


def make(policy):
    return ReplayMemory(6, policy=policy, priority="epr", alpha=AlphaSchedule(1.0, 0.0, "cosine"),
                        seed=11)


def step(memory, step, _):
    """One-pass loop: add a fresh batch (with losses half the time), draw, update losses."""
    index = torch.arange(step * 3, step * 3 + 3)
    fresh = {"input": (index % 256).to(torch.uint8).view(3, 1).expand(3, 4).contiguous(),
             "index": index}
    memory.add(fresh, losses=index.float() / 10 if step % 2 else None)
    fields, slots, weights = memory.sample(4, Progress(step, total_steps=TOTAL))
    memory.update_losses(slots, (fields["index"] % 7).float())
    return fields["index"].clone(), slots.clone(), weights.clone()


@pytest.mark.parametrize("policy", ["reservoir", "fifo"])
def test_resume_equals_uninterrupted_run(policy):
    run = assert_resumes(lambda: make(policy), TOTAL, TOTAL // 2, step)
    assert len(run.interrupted) == 6                   # the memory is full when saved
    straight, second = run.full_run, run.resumed_run
    assert len(run.full) == len(run.resumed) == TOTAL
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
    with pytest.raises(StateError, match="missing"):
        make("reservoir").load_state_dict({k: v for k, v in good.items() if k != "seen"})
    with pytest.raises(StateError, match="unexpected"):
        make("reservoir").load_state_dict({**good, "extra": 1})
    with pytest.raises(ValueError, match="policy"):
        make("fifo").load_state_dict(good)
    with pytest.raises(ValueError, match="capacity"):
        ReplayMemory(7, seed=11).load_state_dict(good)
    with pytest.raises(ValueError, match="rows"):
        make("reservoir").load_state_dict({**good, "fields": {"x": torch.zeros(2)}})


def test_a_refused_state_leaves_the_memory_as_it_was():
    memory = make("fifo")
    memory.add({"x": torch.arange(4.0)}, losses=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    before = memory.state_dict()
    other = make("fifo")
    other.add({"x": torch.arange(10.0, 16.0)})
    bad = other.state_dict()
    bad["generator"] = torch.zeros(3, dtype=torch.uint8)      # the last entry checked
    with pytest.raises(StateError, match=r"^state\.generator: not a state of a cpu"):
        memory.load_state_dict(bad)
    assert_same(memory.state_dict(), before)


@pytest.mark.parametrize("key, value, message", [
    ("priority", "uniform", "state.priority: saved 'uniform', this memory has 'epr'"),
    ("alpha", {"start": 0.5, "end": 0.5, "decay": "constant"}, "state.alpha: saved"),
    ("seen", 2.0, "state.seen: must be an integer >= 0, got 2.0 (float)"),
    ("losses", torch.zeros(3, dtype=torch.float64), "state.losses: must be a tensor of dtype "
     "float32 and shape (3,)"),
    ("fields", {"x": torch.tensor(1.0)}, "state.fields.x: must be a tensor with a leading"),
    ("fields", {0: torch.zeros(3)}, "state.fields: field names must be strings"),
    ("generator", torch.zeros(5056), "state.generator: must be a torch.Generator state"),
])
def test_every_entry_is_checked(key, value, message):
    memory = make("reservoir")
    memory.add({"x": torch.zeros(3)})
    with pytest.raises(StateError) as info:
        make("reservoir").load_state_dict({**memory.state_dict(), key: value})
    assert str(info.value).startswith(message), str(info.value)

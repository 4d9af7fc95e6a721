"""replay: on the two-resolution path: the memory stores dataset indices and load seeds.

The datasets and helpers are those of ``test_two_resolution``: ``Planted`` (image a
function of the index, the index as the third field) and ``Jitter`` (plus noise from the
global ``torch`` RNG, which the workers seed per sample).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resume_harness import assert_resumes
from test_two_resolution import BS, N, SELECT, UNIFORM, Jitter, Planted, mean_model, two_res, \
    wrap

STEPS = {"capacity": 24, "mode": "steps", "k": 2, "priority": {"type": "uniform"}}


def _cfg(phases=SELECT, replay=None, **extra) -> dict:
    return {**two_res(phases, workers=2, **extra), "replay": replay or STEPS}


def test_replay_steps_load_remembered_samples_at_full_resolution():
    """Mode steps, k 2: each fresh batch is followed by two replay batches drawn from the
    samples yielded fresh before; each replayed sample is dataset[i] loaded again, and the
    memory holds 20 bytes a sample (index, seed, loss) whatever the images."""
    sl = wrap(Planted(), _cfg(UNIFORM))
    seen: set[int] = set()
    kinds = []
    for images, _, index in sl:
        ids = index.tolist()
        replayed = sl.stats.replayed
        kinds.append("replay" if replayed else "fresh")
        assert torch.equal(images, torch.stack([Planted()[i][0] for i in ids]))
        if replayed:
            assert replayed == BS and set(ids) <= seen
            assert torch.equal(sl.replay_weights, torch.ones(BS))
        else:
            seen |= set(ids)
    fresh = N // BS
    assert kinds == ["fresh", "replay", "replay"] * fresh
    assert len(kinds) == len(sl) == 3 * fresh
    assert seen == set(range(N))
    mem = sl.replay_memory
    assert len(mem) == 24 and mem.fields == {"index": ((), torch.int64),
                                             "seed": ((), torch.int64)}
    assert mem.nbytes == 24 * (16 + 4)


def test_reaugment_false_replays_the_very_sample_trained_on():
    """Random transforms are seeded per sample: with reaugment false a replayed sample is
    loaded with its first seed (the same noise), with reaugment true with a new one."""
    for reaugment in (False, True):
        sl = wrap(Jitter(), _cfg(UNIFORM, {**STEPS, "reaugment": reaugment}))
        first: dict[int, torch.Tensor] = {}
        same = differ = 0
        for images, _, index in sl:
            for x, i in zip(images, index.tolist()):
                if sl.stats.replayed == 0:
                    first[i] = x.clone()
                elif torch.equal(x, first[i]):
                    same += 1
                else:
                    differ += 1
        assert same + differ == 2 * N
        assert (same, differ) == ((2 * N, 0) if not reaugment else (0, 2 * N))


def test_mix_replaces_the_tail_of_each_batch_and_stores_all_fresh_rows():
    """Mode mix, fraction 0.5: from the second step on the last 3 of 6 rows come from the
    memory (drawn before the batch's own insert), the first 3 are the stream's next fresh
    samples; the displaced fresh samples go into the memory all the same."""
    cfg = _cfg(SELECT, {"capacity": 60, "mode": "mix", "fraction": 0.5,
                        "priority": {"type": "uniform"}})
    sl = wrap(Planted(), cfg, shuffle=False)
    stored: set[int] = set()
    for step, (images, _, index) in enumerate(sl):
        ids = index.tolist()
        assert torch.equal(images, torch.stack([Planted()[i][0] for i in ids]))
        if step == 0:
            assert sl.stats.replayed == 0
        else:
            assert sl.stats.replayed == 3 and set(ids[3:]) <= stored
            assert sl.replay_weights.shape == (BS,)
        stored = set(sl.replay_memory.state_dict()["fields"]["index"].tolist())
    # every sample chosen fresh was stored, including the 3 displaced per step
    assert sl.replay_memory.seen == (N // (2 * BS)) * BS


def test_epr_losses_reported_for_a_batch_land_on_its_slots():
    """report_losses after a replay batch sets the stored losses of its slots (EPR)."""
    cfg = _cfg(UNIFORM, {**STEPS, "capacity": 60, "priority": {"type": "epr", "alpha": 0.5}})
    sl = wrap(Planted(), cfg, shuffle=False)
    for images, labels, index in sl:
        sl.report_losses(index.float())  # a sample's "loss" is its index
    st = sl.replay_memory.state_dict()
    idx, losses = st["fields"]["index"], st["losses"]
    known = torch.isfinite(losses)
    assert known.all()  # every stored sample was reported at least once
    assert torch.equal(losses[known], idx[known].float())


def _train(run, i, batch):
    sl, model, opt = run
    images, labels, index = batch
    loss = F.cross_entropy(model(images), labels, reduction="none")
    opt.zero_grad()
    loss.mean().backward()
    opt.step()
    sl.report_losses(loss.detach())
    return index.tolist(), sl.stats.replayed


@pytest.mark.parametrize("replay,split", [
    (STEPS, 3), (STEPS, 4), (STEPS, 8),
    ({"capacity": 16, "mode": "mix", "fraction": 0.5,
      "priority": {"type": "epr", "alpha": 0.5}}, 5),
])
def test_exact_resume_with_replay(replay, split):
    """Saved between a fresh step and its replay steps, or mid-mix, with training and EPR
    losses reported: the resumed run yields exactly the batches of the uninterrupted one."""
    phases = [{"name": "warmup", "steps": 2, "selection": "uniform"},
              {"name": "select", "selection": "ranked", "beta": 1.0}]

    def build():
        model = mean_model()
        sl = wrap(Jitter(), _cfg(phases, replay), model=model)
        return sl, model, torch.optim.SGD(model.parameters(), lr=0.5)

    r = assert_resumes(build, steps=12, split=split, step_fn=_train)
    assert r.state["pool_source"]["pending"]["replay"] is not None
    assert any(rep for _, (_, rep) in r.full)

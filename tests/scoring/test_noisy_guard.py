"""Noisy-label guard: exact flagging, and fewer noisy samples selected in a simulation."""
from __future__ import annotations

import pytest
import torch

from smartloader.errors import ConfigError, StateError
from smartloader.scoring.noisy_guard import NoisyLabelGuard, build_noisy_guard, flag_extreme
from resume_harness import assert_resumes, assert_same
from sampling_helpers import ranked_reference


def test_flag_extreme_exact():
    assert flag_extreme(torch.arange(20.0), 0.95).nonzero().flatten().tolist() == [19]
    assert flag_extreme(torch.arange(10.0), 0.7).nonzero().flatten().tolist() == [7, 8, 9]
    assert not flag_extreme(torch.ones(6), 0.5).any()
    got = flag_extreme(torch.tensor([0.0, float("nan"), 5.0, 1.0]), 0.5)
    assert got.tolist() == [False, False, True, False]


def test_guard_needs_patience_consecutive_and_resets():
    guard = NoisyLabelGuard(percentile=0.9, patience=2)
    ids = torch.arange(10)
    hot = torch.arange(10.0)                          # id 9 extreme
    assert torch.equal(guard.apply(ids, hot), hot)    # first time: streak 1
    capped = guard.apply(ids, hot)                    # second: flagged, pushed to median
    assert capped[9] == hot.median() and torch.equal(capped[:9], hot[:9])
    assert guard.num_flagged == 1 and guard.last_capped == 1
    cold = hot.flip(0)                                # id 9 now the lowest: streak resets
    assert torch.equal(guard.apply(ids, cold), cold)
    assert guard.num_flagged == 0                     # id 0 is only at streak 1
    assert guard.flagged(torch.tensor([9, 0])).tolist() == [False, False]


def test_guard_state_roundtrip_and_ids_required():
    g1 = NoisyLabelGuard(0.8, 3)
    for _ in range(3):
        g1.apply(torch.tensor([4, 2, 7, 1, 0]), torch.tensor([0.0, 1.0, 9.0, 2.0, 3.0]))
    g2 = NoisyLabelGuard(0.8, 3)
    g2.load_state_dict(g1.state_dict())
    assert g2.flagged(torch.tensor([7, 4])).tolist() == [True, False]
    with pytest.raises(ValueError, match="sample_ids is None"):
        g2.apply(None, torch.zeros(3))
    with pytest.raises(ValueError, match="expected keys"):
        g2.load_state_dict({})


def _simulate(guard: NoisyLabelGuard | None, steps: int = 400) -> tuple[int, int]:
    """Ranked selection over a toy dataset: clean losses fall when trained, noisy ones don't.

    Returns (noisy samples selected, clean samples selected).
    """
    g = torch.Generator().manual_seed(0)
    n_data, pool, k = 200, 64, 32
    noisy = torch.zeros(n_data, dtype=torch.bool)
    noisy[torch.randperm(n_data, generator=g)[:6]] = True   # 3% label noise
    loss = torch.full((n_data,), 2.3)
    loss[noisy] = 4.0
    picked_noisy = picked_clean = 0
    for _ in range(steps):
        ids = torch.randperm(n_data, generator=g)[:pool]
        scores = loss[ids] * (1 + 0.05 * torch.randn(pool, generator=g))
        if guard is not None:
            scores = guard.apply(ids, scores)
        chosen = ids[ranked_reference(scores, k, 1.0, g)]
        picked_noisy += int(noisy[chosen].sum())
        picked_clean += int((~noisy[chosen]).sum())
        trained = chosen[~noisy[chosen]]
        loss[trained] *= 0.9                         # clean samples get learned
        loss[~noisy] += 0.002                        # and slowly forgotten
    return picked_noisy, picked_clean


def test_guard_selects_fewer_noisy_samples():
    without, clean = _simulate(None)
    uniform_rate = 6 / 200 * (without + clean)       # noisy picks a uniform draw would make
    assert without > 1.4 * uniform_rate              # selection chases the noisy samples
    with_median, _ = _simulate(NoisyLabelGuard(0.95, 3))
    with_min, _ = _simulate(NoisyLabelGuard(0.95, 3, cap_to="min"))
    assert with_median < 0.8 * without
    assert with_min < 0.6 * without and with_min < uniform_rate


@pytest.mark.parametrize("mapping, message", [
    ({"percentile": 1.0}, "n.percentile: must be < 1"),
    ({"patience": 0}, "n.patience: must be >= 1"),
    ({"cap": 0.1}, "n.cap: unknown key"),
    ({"cap_to": "mean"}, "n.cap_to: must be one of median, min"),
])
def test_build_noisy_guard_errors(mapping, message):
    with pytest.raises(ConfigError) as err:
        build_noisy_guard(mapping, "n")
    assert str(err.value).startswith(message)
    assert build_noisy_guard({}).patience == 3


def _guard_step(guard, step, _):
    ids = torch.arange(8) + (step % 3)
    scores = torch.sin(ids.float() * 1.7) + (ids == 5).float() * 3   # id 5 always extreme
    return guard.apply(ids, scores), guard.num_flagged, guard.last_capped


def test_guard_resumes_exactly_through_the_harness():
    run = assert_resumes(lambda: NoisyLabelGuard(0.8, 2, cap_to="min"), 10, 4, _guard_step)
    assert run.full[-1][1] >= 1                       # something was flagged and capped


@pytest.mark.parametrize("key, value, message", [
    ("streak", torch.zeros(4, dtype=torch.int64), "state.streak: must be a tensor of dtype "
     "int32 and shape (n,)"),
    ("streak", torch.zeros(2, 2, dtype=torch.int32), "state.streak: must be a tensor"),
    ("streak", torch.tensor([0, -1], dtype=torch.int32), "state.streak: values must be >= 0"),
    ("patience", 2, "state.patience: saved 2, this guard has 3"),
    ("percentile", 0.9, "state.percentile: saved 0.9, this guard has 0.8"),
    ("cap_to", "min", "state.cap_to: saved 'min', this guard has 'median'"),
])
def test_guard_state_checks_every_entry_and_stays_as_it_was(key, value, message):
    guard = NoisyLabelGuard(0.8, 3)
    guard.apply(torch.tensor([4, 2, 7, 1, 0]), torch.tensor([0.0, 1.0, 9.0, 2.0, 3.0]))
    before = guard.state_dict()
    with pytest.raises(StateError) as info:
        guard.load_state_dict({**before, key: value})
    assert str(info.value).startswith(message), str(info.value)
    assert_same(guard.state_dict(), before)

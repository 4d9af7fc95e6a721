"""EPR priority, importance weights and the alpha schedule: exact values on small inputs."""
import math

import pytest
import torch

from smartloader.common.progress import Progress
from smartloader.replay import (MIN_PRIORITY, AlphaSchedule, alpha_at, epr_priority,
                                importance_weights)


def test_epr_priority_exact():
    losses = torch.tensor([0.0, math.log(2.0), math.log(4.0), float("inf")])
    assert torch.allclose(epr_priority(losses, 0.5), torch.tensor([0.5, 0.75, 0.875, 1.0]))
    assert torch.equal(epr_priority(losses, 0.0), torch.ones(4))          # alpha 0: uniform
    assert epr_priority(losses, 0.5).dtype == torch.float32


def test_epr_priority_is_floored_so_weights_stay_finite():
    p = epr_priority(torch.tensor([0.0, 1e-6]), 1.0)
    assert torch.equal(p, torch.tensor([MIN_PRIORITY, MIN_PRIORITY]))
    assert torch.isfinite(importance_weights(p)).all()
    with pytest.raises(ValueError):
        epr_priority(torch.zeros(1), 1.5)


def test_importance_weights_exact():
    w = importance_weights(torch.tensor([1.0, 0.5, 0.25]))
    # 1/P = [1, 2, 4], mean 7/3
    assert torch.allclose(w, torch.tensor([3 / 7, 6 / 7, 12 / 7]))
    assert torch.isclose(w.mean(), torch.tensor(1.0))
    assert torch.equal(importance_weights(torch.full((5,), 0.3)), torch.ones(5))
    with pytest.raises(ValueError):
        importance_weights(torch.ones(0))


def test_importance_weights_make_the_weighted_loss_unbiased():
    """E_q[w * loss] = E_p[loss] when sampling with q ∝ P: exact, by enumeration."""
    loss = torch.tensor([0.2, 1.0, 3.0, 0.5])
    p = epr_priority(loss, 0.8)
    q = p / p.sum()
    w = (1 / p) / (q * (1 / p)).sum()  # normalised so E_q[w] = 1
    assert torch.isclose((q * w * loss).sum(), loss.mean())


def test_alpha_at_exact():
    assert alpha_at(0.3, 0.7, 0.0, "constant") == 0.7
    assert alpha_at(0.0, 1.0, 0.0, "linear") == 1.0
    assert alpha_at(0.25, 1.0, 0.0, "linear") == 0.75
    assert alpha_at(1.0, 1.0, 0.2, "linear") == pytest.approx(0.2)
    assert alpha_at(0.5, 1.0, 0.0, "cosine") == pytest.approx(0.5)
    assert alpha_at(0.25, 1.0, 0.0, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert alpha_at(2.0, 1.0, 0.0, "linear") == 0.0        # clipped to the end
    with pytest.raises(ValueError):
        alpha_at(0.5, 1.0, 0.0, "step")


def test_alpha_schedule_from_progress():
    schedule = AlphaSchedule(1.0, 0.0, "linear")
    assert schedule(Progress(step=30, total_steps=120)) == 0.75
    with pytest.raises(ValueError, match="progress"):
        schedule()
    assert AlphaSchedule(0.4)() == 0.4 and AlphaSchedule(0.4).end == 0.4
    with pytest.raises(ValueError):
        AlphaSchedule(1.2)
    with pytest.raises(ValueError):
        AlphaSchedule(0.5, 0.1, "constant")

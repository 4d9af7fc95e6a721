"""Learning-rate schedules: F1-CLR against thesis Eq. 3.8, linear scaling rule, and the
torch LRScheduler subclasses setting lr and momentum / beta1."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from smartloader.schedules.lr import (F1CLRSchedule, F1CLRScheduler, LinearScalingSchedule,
                                      LinearScalingScheduler, f1_clr, linear_scaling_lr)


def eq_3_8(t, L, tw, lr_max, bh=0.95, bl=0.85):
    """Thesis Eq. 3.8, written out independently of the implementation."""
    if t < tw:
        lr = lr_max - 0.5 * lr_max * (math.cos(t / tw * math.pi) + 1)
        b = bl + 0.5 * (bh - bl) * (math.cos(t / tw * math.pi) + 1)
    else:
        lr = 0.5 * lr_max * (math.cos((t - tw) / (L - tw) * math.pi) + 1)
        b = bh - 0.5 * (bh - bl) * (math.cos((t - tw) / (L - tw) * math.pi) + 1)
    return lr, b


def test_f1_clr_key_points():
    L, tw, mx = 1000, 100, 0.4
    lr, m = f1_clr(0, L, mx, tw)
    assert lr == pytest.approx(0.0, abs=1e-12) and m == pytest.approx(0.95)
    lr, m = f1_clr(50, L, mx, tw)  # middle of warm-up
    assert lr == pytest.approx(0.2) and m == pytest.approx(0.90)
    lr, m = f1_clr(100, L, mx, tw)  # peak
    assert lr == pytest.approx(0.4) and m == pytest.approx(0.85)
    lr, m = f1_clr(550, L, mx, tw)  # middle of decay
    assert lr == pytest.approx(0.2) and m == pytest.approx(0.90)
    lr, m = f1_clr(1000, L, mx, tw)  # end
    assert lr == pytest.approx(0.0, abs=1e-12) and m == pytest.approx(0.95)
    assert f1_clr(5000, L, mx, tw) == f1_clr(1000, L, mx, tw)


def test_f1_clr_warmup_is_fixed_when_training_is_longer():
    # F1-CLR's point: the warm-up length does not grow with the run.
    for L in (1000, 4000):
        assert f1_clr(100, L, 1.0, 100)[0] == pytest.approx(1.0)
        assert f1_clr(99, L, 1.0, 100)[0] < 1.0


@settings(max_examples=80, deadline=None)
@given(L=st.integers(2, 5000), frac=st.floats(0.0, 0.99), pos=st.floats(0.0, 1.0),
       mx=st.floats(1e-4, 10.0))
def test_f1_clr_matches_eq_3_8(L, frac, pos, mx):
    tw = min(int(frac * L), L - 1)
    t = int(pos * L)
    got = f1_clr(t, L, mx, tw)
    want = eq_3_8(t, L, tw, mx)
    assert got[0] == pytest.approx(want[0], rel=1e-9, abs=1e-12)
    assert got[1] == pytest.approx(want[1], rel=1e-9)
    assert 0.85 - 1e-12 <= got[1] <= 0.95 + 1e-12


def test_linear_scaling_rule():
    # 0.1 at 256 -> 0.4 at 1024, linear per-iteration ramp from 0.1 over 100 steps
    f = lambda s: linear_scaling_lr(s, 0.1, 256, 1024, 100)
    assert f(0) == pytest.approx(0.1)
    assert f(50) == pytest.approx(0.25)
    assert f(99) == pytest.approx(0.1 + 0.3 * 0.99)
    assert f(100) == pytest.approx(0.4) and f(10_000) == pytest.approx(0.4)
    assert linear_scaling_lr(0, 0.1, 256, 1024, 100, warmup_start_lr=0.0) == 0.0
    # smaller batch than the reference: the target is below base_lr, no ramp up above it
    assert linear_scaling_lr(0, 0.1, 256, 128, 10) == pytest.approx(0.05)
    # cosine decay after warm-up
    g = lambda s: linear_scaling_lr(s, 0.1, 256, 512, 10, decay="cosine", total_steps=110)
    assert g(10) == pytest.approx(0.2) and g(60) == pytest.approx(0.1)
    assert g(110) == pytest.approx(0.0, abs=1e-12)


def _model():
    return torch.nn.Linear(2, 1)


def test_f1_clr_scheduler_sgd_sets_lr_and_momentum():
    opt = torch.optim.SGD(_model().parameters(), lr=1.0, momentum=0.9)
    sched = F1CLRScheduler(opt, total_steps=20, max_lr=0.1, warmup_steps=10)
    seen = []
    for step in range(21):
        g = opt.param_groups[0]
        seen.append((g["lr"], g["momentum"]))
        want = f1_clr(step, 20, 0.1, 10)
        assert g["lr"] == pytest.approx(want[0], abs=1e-12)
        assert g["momentum"] == pytest.approx(want[1])
        opt.step()
        sched.step()
    assert seen[10] == pytest.approx((0.1, 0.85))
    assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)


def test_f1_clr_scheduler_adam_sets_beta1_and_keeps_beta2():
    params = list(_model().parameters())
    opt = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr_scale": 0.5}],
                           lr=1.0, betas=(0.9, 0.999))
    sched = F1CLRScheduler(opt, total_steps=20, max_lr=0.1, warmup_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    lr, mom = f1_clr(5, 20, 0.1, 10)
    g0, g1 = opt.param_groups
    assert g0["lr"] == pytest.approx(lr) and g1["lr"] == pytest.approx(0.5 * lr)
    assert g0["betas"][0] == pytest.approx(mom) and g0["betas"][1] == 0.999
    assert g1["betas"][0] == pytest.approx(mom)


def test_scheduler_rejects_optimizer_without_momentum():
    opt = torch.optim.Adagrad(_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        F1CLRScheduler(opt, total_steps=20, max_lr=0.1, warmup_steps=10)


def test_linear_scaling_scheduler_and_schedule_class():
    sched_cfg = LinearScalingSchedule(base_lr=0.1, batch_size=1024, warmup_steps=4,
                                      momentum_value=0.9)
    opt = torch.optim.SGD(_model().parameters(), lr=1.0, momentum=0.0)
    sched = sched_cfg.scheduler(opt)
    assert isinstance(sched, LinearScalingScheduler)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[0]["momentum"] == 0.9
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.175, 0.25, 0.325, 0.4, 0.4])
    assert sched_cfg(2) == pytest.approx(0.25)


def test_f1_clr_schedule_class_and_state_dict_roundtrip():
    cfg = F1CLRSchedule(max_lr=0.2, warmup_steps=5, total_steps=50)
    assert cfg(5) == pytest.approx(0.2) and cfg.momentum(5) == pytest.approx(0.85)
    opt = torch.optim.SGD(_model().parameters(), lr=1.0, momentum=0.9)
    sched = cfg.scheduler(opt)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD(_model().parameters(), lr=1.0, momentum=0.9)
    sched2 = cfg.scheduler(opt2)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(cfg(8))

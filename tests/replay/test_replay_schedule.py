"""ReplayScheduler / replay_plan: which batches are fresh, how many samples come from memory."""
import pytest

from smartloader.replay import ReplayPlan, ReplayScheduler, replay_plan


def test_steps_mode_k_replay_steps_after_each_fresh_step():
    scheduler = ReplayScheduler(batch_size=8, mode="steps", k=3)
    fresh = [plan.fresh for plan in scheduler.preview(9)]
    assert fresh == [True, False, False, False, True, False, False, False, True]
    assert scheduler.plan(1) == ReplayPlan(n_fresh=0, n_replay=8)
    assert scheduler.plan(4) == ReplayPlan(n_fresh=8, n_replay=0)


def test_steps_mode_with_empty_memory_stays_fresh():
    assert replay_plan(1, 8, mode="steps", k=1, available=0) == ReplayPlan(8, 0)
    assert replay_plan(1, 8, mode="steps", k=1, available=1) == ReplayPlan(0, 8)


def test_mix_mode_fraction_of_each_batch():
    scheduler = ReplayScheduler(batch_size=8, mode="mix", fraction=0.25)
    assert scheduler.plan(0, available=0) == ReplayPlan(8, 0)     # first batch: nothing stored
    assert scheduler.plan(1, available=1) == ReplayPlan(7, 1)
    assert scheduler.plan(5, available=100) == ReplayPlan(6, 2)
    assert all(p.n_fresh + p.n_replay == 8 for p in scheduler.preview(10, available=3))
    # at least one fresh sample per batch, or the stream would stall
    assert replay_plan(0, 4, mode="mix", fraction=0.9) == ReplayPlan(1, 3)


def test_steps_for_a_one_pass_run():
    assert ReplayScheduler(10, mode="steps", k=3).steps_for(95) == 40      # 10 fresh batches × 4
    assert ReplayScheduler(8, mode="mix", fraction=0.25).steps_for(60) == 10  # 6 fresh per batch
    assert ReplayScheduler(8, mode="steps", k=1).fresh_per_step == 4.0


@pytest.mark.parametrize("kwargs", [{"mode": "both"}, {"k": 0}, {"mode": "mix", "fraction": 1.0},
                                    {"mode": "mix", "fraction": 0.0}, {"batch_size": 0}])
def test_scheduler_rejects_bad_settings(kwargs):
    kwargs = {"batch_size": 4, **kwargs}
    with pytest.raises(ValueError):
        ReplayScheduler(**kwargs)

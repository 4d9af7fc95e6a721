"""plan_rows / plan_summary / format_plan / plot_plan with hand-computed numbers."""
import sys

import pytest

from smartloader.tools.plan import PlanPhase, format_plan, plan_rows, plan_summary, plot_plan
from smartloader.schedules import (ConstantResolution, F1CLRSchedule, LinearMagnitude, Schedules,
                                   SuperProgressiveResolution)


def test_constant_resolution_uniform_is_exactly_one():
    s = Schedules(resolution=ConstantResolution(224))
    rows = plan_rows(1000, [PlanPhase("all", 0, 1000)], s)
    assert len(rows) == 1 and rows[0]["start"] == 0 and rows[0]["stop"] == 1000
    summary = plan_summary(rows)
    assert summary["resolution_factor"] == 1.0
    assert summary["relative_compute"] == 1.0 and summary["scoring_overhead"] == 0.0
    assert summary["distinct_shapes"] == 1


def test_super_progressive_hand_computed():
    # 1100 steps: 100 warm-up steps at 224, then 5 stages of 200 steps (96..224).
    s = Schedules(resolution=SuperProgressiveResolution(96, 224, warmup_steps=100,
                                                        total_steps=1100))
    rows = plan_rows(1100, [], s)
    assert [(r["start"], r["stop"], r["resolution"]) for r in rows] == [
        (0, 100, 224), (100, 300, 96), (300, 500, 128), (500, 700, 160),
        (700, 900, 192), (900, 1100, 224)]
    assert all(r["phase"] == "-" and r["selection"] == "uniform" for r in rows)
    stages = sum(r * r for r in (96, 128, 160, 192, 224)) / 224 ** 2  # = 2.7551...
    expected = (100 * 1.0 + 200 * stages) / 1100
    summary = plan_summary(rows)
    assert summary["resolution_factor"] == pytest.approx(expected, rel=1e-12)
    assert summary["relative_compute"] == pytest.approx(expected, rel=1e-12)
    assert summary["train_resolutions"] == [96, 128, 160, 192, 224]
    assert summary["distinct_shapes"] == 5


@pytest.mark.parametrize("arch,power", [("cnn", 2), ("vit", 3)])
def test_scoring_overhead_cnn_and_vit(arch, power):
    s = Schedules(resolution=ConstantResolution(224))
    phases = [PlanPhase("warmup", 0, 200), PlanPhase("select", 200, 800, "ranked", 1.0),
              PlanPhase("cooldown", 800, 1000)]
    rows = plan_rows(1000, phases, s, pool_factor=2.0, score_resolution=96, arch=arch)
    assert [r["phase"] for r in rows] == ["warmup", "select", "cooldown"]
    per_step = 2.0 / 3.0 * (96 / 224) ** power
    assert rows[1]["overhead"] == pytest.approx(per_step)
    assert rows[1]["score_resolution"] == 96 and rows[0]["score_resolution"] is None
    summary = plan_summary(rows)
    assert summary["scoring_overhead"] == pytest.approx(0.6 * per_step)
    assert summary["relative_compute"] == pytest.approx(1.0 + 0.6 * per_step)
    assert summary["distinct_shapes"] == 2
    if arch == "cnn":  # the thesis: about 12 % at 2x pool, 96/224
        assert per_step == pytest.approx(0.1224, abs=1e-4)


def test_score_scale_follows_resolution_and_splits_on_phase():
    s = Schedules(resolution=SuperProgressiveResolution(96, 224, warmup_steps=100,
                                                        total_steps=1100),
                  score_scale=0.5, augment=LinearMagnitude(4, 6, total_steps=1100),
                  lr=F1CLRSchedule(0.1, 100, total_steps=1100))
    rows = plan_rows(1100, [PlanPhase("select", 400, 1100, "ranked", 1.0)], s)
    assert [(r["start"], r["stop"]) for r in rows] == [
        (0, 100), (100, 300), (300, 400), (400, 500), (500, 700), (700, 900), (900, 1100)]
    assert [r["score_resolution"] for r in rows] == [None, None, None, 64, 80, 96, 112]
    assert rows[3]["overhead"] == pytest.approx(2 / 3 * 0.25)
    assert rows[0]["magnitude"] == (4.0, pytest.approx(4 + 2 * 99 / 1100))
    assert rows[0]["lr"][0] == pytest.approx(0.0, abs=1e-12)
    assert rows[1]["lr"][0] == pytest.approx(0.1)


def test_selection_without_score_resolution_is_an_error():
    s = Schedules(resolution=ConstantResolution(224))
    with pytest.raises(ValueError, match="score_resolution"):
        plan_rows(10, [PlanPhase("select", 0, 10, "ranked", 1.0)], s)


def test_overlapping_phases_rejected():
    s = Schedules()
    with pytest.raises(ValueError, match="overlaps"):
        plan_rows(100, [PlanPhase("a", 0, 60), PlanPhase("b", 50, 100)], s)
    with pytest.raises(ValueError):
        plan_rows(100, [PlanPhase("a", 0, 120)], s)
    with pytest.raises(ValueError, match="arch"):
        plan_rows(100, [], s, arch="rnn")


def test_format_plan_table():
    s = Schedules(resolution=ConstantResolution(224), augment=LinearMagnitude(4, 6, total_steps=100))
    text = format_plan(100, [PlanPhase("warmup", 0, 50), PlanPhase("select", 50, 100, "ranked", 1.0)],
                       s, score_resolution=96)
    lines = text.splitlines()
    assert lines[0].split() == ["steps", "phase", "selection", "beta", "res", "score",
                                "magnitude", "lr", "cost"]
    assert lines[1].split()[:6] == ["0-49", "warmup", "uniform", "-", "224", "-"]
    assert lines[2].split()[:6] == ["50-99", "select", "ranked", "1", "224", "96"]
    assert "4.00->4.98" in lines[1]
    assert "distinct input shapes: 2" in text
    assert "compute vs uniform full resolution: 1.061" in text


def test_plot_plan_writes_file(tmp_path):
    pytest.importorskip("matplotlib")
    s = Schedules(resolution=SuperProgressiveResolution(96, 224, warmup_steps=10,
                                                        total_steps=110),
                  augment=LinearMagnitude(4, 6, total_steps=110),
                  lr=F1CLRSchedule(0.1, 10, total_steps=110))
    path = tmp_path / "plan.png"
    plot_plan(110, [PlanPhase("warmup", 0, 10), PlanPhase("select", 10, 100, "r", 1.0)], s,
              str(path))
    assert path.stat().st_size > 1000


def test_plot_plan_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install smartloader\[plot\]"):
        plot_plan(10, [], Schedules(), str(tmp_path / "x.png"))

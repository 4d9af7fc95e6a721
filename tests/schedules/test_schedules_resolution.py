"""Resolution schedules: exact values at start, boundaries and end; snapping; monotonicity."""
import pytest
from hypothesis import given, settings, strategies as st

from smartloader.common.progress import Progress
from smartloader.schedules.resolution import (ConstantResolution, ProgressiveResolution,
                                              SuperProgressiveResolution, distinct_resolutions,
                                              progressive_resolution, resolution_grid,
                                              score_resolution, staged,
                                              super_progressive_resolution)


def test_grid_96_to_224_in_32px():
    assert resolution_grid(96, 224) == [96, 128, 160, 192, 224]


def test_grid_unaligned_bounds_never_leave_range():
    assert resolution_grid(100, 230) == [100, 128, 160, 192, 224, 230]
    assert resolution_grid(224, 224) == [224]
    assert resolution_grid(96, 224, increment=64) == [96, 128, 192, 224]


def test_grid_rejects_bad_bounds():
    with pytest.raises(ValueError):
        resolution_grid(224, 96)
    with pytest.raises(ValueError):
        resolution_grid(96, 224, increment=0)


def test_staged_equal_stages():
    grid = [96, 128, 160, 192, 224]
    assert [staged(u, grid) for u in (0.0, 0.19, 0.2, 0.6, 0.79, 0.8, 1.0)] == \
        [96, 96, 128, 192, 192, 224, 224]


def test_progressive_exact_values():
    # 100 steps, ramp over the whole run: 5 stages of 20 steps.
    values = [progressive_resolution(s, 100, 96, 224) for s in range(100)]
    assert values[:20] == [96] * 20
    assert values[20:40] == [128] * 20
    assert values[80:] == [224] * 20
    assert progressive_resolution(100, 100, 96, 224) == 224
    assert progressive_resolution(10_000, 100, 96, 224) == 224  # past the end: clamp


def test_progressive_start_end_window():
    # ramp between fractions 0.2 and 0.6 of 100 steps; 4 stages of 10 steps for 128->224
    f = lambda s: progressive_resolution(s, 100, 128, 224, start=0.2, end=0.6)
    assert [f(s) for s in (0, 19, 20, 29, 30, 40, 50, 59, 60, 99)] == \
        [128, 128, 128, 128, 160, 192, 224, 224, 224, 224]


def test_super_progressive_exact_values():
    # 1100 steps, 100 warm-up at 224, then 1000 steps ramp: 5 stages of 200 steps.
    f = lambda s: super_progressive_resolution(s, 1100, 96, 224, 100)
    assert f(0) == 224 and f(99) == 224
    assert f(100) == 96 and f(299) == 96
    assert f(300) == 128 and f(499) == 128
    assert f(500) == 160 and f(700) == 192
    assert f(900) == 224 and f(1099) == 224
    assert distinct_resolutions(f, 1100) == [96, 128, 160, 192, 224]


def test_super_progressive_needs_warmup_shorter_than_run():
    with pytest.raises(ValueError):
        super_progressive_resolution(0, 100, 96, 224, 100)


def test_classes_accept_progress_and_step():
    sched = SuperProgressiveResolution(96, 224, warmup_fraction=0.1, total_steps=1100)
    assert sched.warmup_for(1100) == 110
    assert sched(109) == 224 and sched(110) == 96
    assert sched(Progress(step=110, total_steps=1100)) == 96
    # a Progress with its own total_steps wins over the schedule's
    assert sched(Progress(step=110, total_steps=2200)) == 224
    with pytest.raises(ValueError):
        SuperProgressiveResolution(96, 224).__call__(0)  # neither warm-up given
    with pytest.raises(ValueError):
        ProgressiveResolution(96, 224)(5)  # no total_steps anywhere
    assert ConstantResolution(160)(12345) == 160


def test_score_resolution_rounds():
    assert score_resolution(224, 0.43) == 96
    assert score_resolution(96, 0.43) == 41
    assert score_resolution(1, 0.1) == 1


@settings(max_examples=60, deadline=None)
@given(lo=st.integers(1, 300), span=st.integers(0, 300), inc=st.integers(1, 64),
       total=st.integers(1, 400), warm=st.floats(0.0, 0.9), a=st.floats(0.0, 0.9),
       width=st.floats(0.01, 1.0))
def test_monotone_and_within_bounds(lo, span, inc, total, warm, a, width):
    hi = lo + span
    grid = resolution_grid(lo, hi, inc)
    assert grid == sorted(set(grid)) and grid[0] == lo and grid[-1] == hi
    start, end = a, min(1.0, a + width)
    if start >= end:
        return
    prog = [progressive_resolution(s, total, lo, hi, start, end, inc) for s in range(total + 1)]
    assert all(x <= y for x, y in zip(prog, prog[1:]))
    assert set(prog) <= set(grid) and prog[-1] == hi
    w = min(int(warm * total), total - 1)
    sp = [super_progressive_resolution(s, total, lo, hi, w, inc) for s in range(total + 1)]
    assert all(v == hi for v in sp[:w])
    after = sp[w:]
    assert after[0] == lo and after[-1] == hi
    assert all(x <= y for x, y in zip(after, after[1:]))
    assert set(sp) <= set(grid)

"""Augmentation-magnitude schedules."""
import pytest
from hypothesis import given, settings, strategies as st

from smartloader.common.progress import Progress
from smartloader.schedules.magnitude import (ConstantMagnitude, LinearMagnitude,
                                             PiecewiseMagnitude, linear_magnitude,
                                             piecewise_magnitude)


def test_linear_exact_values():
    assert linear_magnitude(0, 100, 4.0, 6.0) == 4.0
    assert linear_magnitude(25, 100, 4.0, 6.0) == 4.5
    assert linear_magnitude(100, 100, 4.0, 6.0) == 6.0
    assert linear_magnitude(500, 100, 4.0, 6.0) == 6.0
    # window 0.5..1.0: flat before, linear after
    assert linear_magnitude(40, 100, 4.0, 6.0, start=0.5) == 4.0
    assert linear_magnitude(75, 100, 4.0, 6.0, start=0.5) == 5.0


def test_piecewise_exact_values():
    pts = [(0.0, 2.0), (0.5, 6.0), (1.0, 6.0)]
    assert piecewise_magnitude(0, 100, pts) == 2.0
    assert piecewise_magnitude(25, 100, pts) == 4.0
    assert piecewise_magnitude(50, 100, pts) == 6.0
    assert piecewise_magnitude(90, 100, pts) == 6.0
    # flat before the first point and after the last
    assert piecewise_magnitude(0, 100, [(0.2, 3.0), (0.4, 1.0)]) == 3.0
    assert piecewise_magnitude(30, 100, [(0.2, 3.0), (0.4, 1.0)]) == pytest.approx(2.0)
    assert piecewise_magnitude(99, 100, [(0.2, 3.0), (0.4, 1.0)]) == 1.0


def test_classes():
    assert ConstantMagnitude(5.0)(7) == 5.0
    lin = LinearMagnitude(4.0, 6.0, total_steps=10)
    assert lin(5) == 5.0 and lin(Progress(step=10, total_steps=10)) == 6.0
    pw = PiecewiseMagnitude(((0.0, 0.0), (1.0, 10.0)), total_steps=10)
    assert pw(3) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        LinearMagnitude(6.0, 4.0)
    with pytest.raises(ValueError):
        PiecewiseMagnitude(((0.5, 1.0), (0.5, 2.0)))
    with pytest.raises(ValueError):
        ConstantMagnitude(11.0)


@settings(max_examples=50, deadline=None)
@given(lo=st.floats(0, 10), hi=st.floats(0, 10), total=st.integers(1, 300))
def test_linear_monotone_and_bounded(lo, hi, total):
    lo, hi = min(lo, hi), max(lo, hi)
    vals = [linear_magnitude(s, total, lo, hi) for s in range(total + 1)]
    assert all(x <= y + 1e-12 for x, y in zip(vals, vals[1:]))
    assert vals[0] == lo and vals[-1] == pytest.approx(hi)
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in vals)

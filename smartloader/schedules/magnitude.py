"""Augmentation-magnitude schedules (thesis §3.3.2, Appendix A.2).

The magnitude ``m`` is on a 0..10 scale where 5 is the standard strength of the recipe
(the thesis scales SimCLR colour jitter linearly with 5 = standard; see
:mod:`smartloader.augment` for what each op does at a given ``m``). The thesis raises ``m``
linearly from 4 to 6 while resolution rises: small images cannot carry strong
augmentation, so strength follows resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from smartloader.common.readers import (as_float, as_list, as_str, check_keys, fail, join,
                                        require_mapping)
from smartloader.common.progress import Progress
from smartloader.schedules._axis import fraction, ramp, resolve

#: Largest magnitude the augment ops define (their strongest setting).
MAX_MAGNITUDE = 10.0


def linear_magnitude(step: int, total_steps: int, minimum: float, maximum: float,
                     start: float = 0.0, end: float = 1.0) -> float:
    """``minimum`` before fraction ``start``, linear to ``maximum`` at fraction ``end``.

    >>> linear_magnitude(50, 100, 4.0, 6.0)
    5.0
    """
    return minimum + (maximum - minimum) * ramp(step, total_steps, start, end)


def piecewise_magnitude(step: int, total_steps: int,
                        points: Sequence[tuple[float, float]]) -> float:
    """Linear interpolation through ``(fraction, value)`` points (fractions strictly
    increasing); constant before the first point and after the last.

    >>> piecewise_magnitude(25, 100, [(0.0, 2.0), (0.5, 6.0), (1.0, 6.0)])
    4.0
    """
    if not points:
        raise ValueError("points must not be empty")
    f = fraction(step, total_steps)
    if f <= points[0][0]:
        return float(points[0][1])
    for (f0, v0), (f1, v1) in zip(points, points[1:]):
        if f <= f1:
            return v0 + (v1 - v0) * (f - f0) / (f1 - f0)
    return float(points[-1][1])


@dataclass(frozen=True)
class ConstantMagnitude:
    """``m = value`` throughout (default recipe: 5, the standard strength)."""

    value: float = 5.0

    needs_total_steps = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= MAX_MAGNITUDE:
            raise ValueError(f"value must be in [0, {MAX_MAGNITUDE}], got {self.value}")

    def __call__(self, progress_or_step: Progress | int) -> float:
        resolve(progress_or_step, None, needs_total=False)
        return self.value

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "augment",
                    total_steps: int | None = None) -> "ConstantMagnitude":
        check_keys(mapping, ("type", "value"), path)
        if "value" not in mapping:
            raise fail(join(path, "value"), "required for type constant")
        return cls(_magnitude(mapping["value"], join(path, "value")))


@dataclass(frozen=True)
class LinearMagnitude:
    """:func:`linear_magnitude`; defaults are the thesis' 4 -> 6 over the whole run."""

    minimum: float = 4.0
    maximum: float = 6.0
    start: float = 0.0
    end: float = 1.0
    total_steps: int | None = None

    needs_total_steps = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.minimum <= self.maximum <= MAX_MAGNITUDE:
            raise ValueError(f"need 0 <= minimum <= maximum <= {MAX_MAGNITUDE}, got "
                             f"{self.minimum}, {self.maximum}")
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(f"need 0 <= start < end <= 1, got {self.start}, {self.end}")

    def __call__(self, progress_or_step: Progress | int) -> float:
        step, total = resolve(progress_or_step, self.total_steps)
        return linear_magnitude(step, total, self.minimum, self.maximum, self.start,
                                self.end)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "augment",
                    total_steps: int | None = None) -> "LinearMagnitude":
        check_keys(mapping, ("type", "min", "max", "start", "end"), path)
        for key in ("min", "max"):
            if key not in mapping:
                raise fail(join(path, key), "required for type linear")
        lo = _magnitude(mapping["min"], join(path, "min"))
        hi = _magnitude(mapping["max"], join(path, "max"))
        if lo > hi:
            raise fail(join(path, "min"), f"must be <= max ({hi}); use type piecewise for "
                       "a falling magnitude", lo)
        start = as_float(mapping.get("start", 0.0), join(path, "start"),
                         minimum=0.0, maximum=1.0)
        end = as_float(mapping.get("end", 1.0), join(path, "end"), minimum=0.0, maximum=1.0)
        if start >= end:
            raise fail(join(path, "start"), f"must be < end ({end})", start)
        return cls(lo, hi, start, end, total_steps)


@dataclass(frozen=True)
class PiecewiseMagnitude:
    """:func:`piecewise_magnitude` through ``points`` (a tuple of (fraction, value))."""

    points: tuple[tuple[float, float], ...]
    total_steps: int | None = None

    needs_total_steps = True

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("points must not be empty")
        fs = [f for f, _ in self.points]
        if any(b <= a for a, b in zip(fs, fs[1:])) or fs[0] < 0.0 or fs[-1] > 1.0:
            raise ValueError(f"fractions must increase strictly within [0, 1], got {fs}")
        if any(not 0.0 <= v <= MAX_MAGNITUDE for _, v in self.points):
            raise ValueError(f"values must be in [0, {MAX_MAGNITUDE}]")

    def __call__(self, progress_or_step: Progress | int) -> float:
        step, total = resolve(progress_or_step, self.total_steps)
        return piecewise_magnitude(step, total, self.points)

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any], path: str = "augment",
                    total_steps: int | None = None) -> "PiecewiseMagnitude":
        check_keys(mapping, ("type", "points"), path)
        if "points" not in mapping:
            raise fail(join(path, "points"), "required for type piecewise")
        raw = as_list(mapping["points"], join(path, "points"))
        if not raw:
            raise fail(join(path, "points"), "must not be empty")
        points = []
        for i, item in enumerate(raw):
            p = join(join(path, "points"), i)
            item = as_list(item, p)
            if len(item) != 2:
                raise fail(p, "must be [fraction, value]", item)
            f = as_float(item[0], join(p, 0), minimum=0.0, maximum=1.0)
            if points and f <= points[-1][0]:
                raise fail(join(p, 0), f"fractions must increase strictly (previous "
                           f"{points[-1][0]})", f)
            points.append((f, _magnitude(item[1], join(p, 1))))
        return cls(tuple(points), total_steps)


def _magnitude(value: Any, path: str) -> float:
    return as_float(value, path, minimum=0.0, maximum=MAX_MAGNITUDE)


MAGNITUDE_TYPES = {
    "constant": ConstantMagnitude,
    "linear": LinearMagnitude,
    "piecewise": PiecewiseMagnitude,
}

MagnitudeSchedule = ConstantMagnitude | LinearMagnitude | PiecewiseMagnitude


def magnitude_from_config(value: Any, path: str = "augment",
                          total_steps: int | None = None) -> MagnitudeSchedule:
    """Build a magnitude schedule from its YAML mapping (``type`` picks the class)."""
    mapping = require_mapping(value, path)
    if "type" not in mapping:
        raise fail(join(path, "type"), f"required (one of {', '.join(MAGNITUDE_TYPES)})")
    kind = as_str(mapping["type"], join(path, "type"), choices=MAGNITUDE_TYPES)
    return MAGNITUDE_TYPES[kind].from_config(mapping, path, total_steps)

"""Augmentation-magnitude schedules (thesis §3.3.2, Appendix A.2).

The magnitude ``m`` is on a 0..10 scale where 5 is the standard strength of the recipe
(the thesis scales SimCLR colour jitter linearly with 5 = standard; see
:mod:`smartloader.augment` for what each op does at a given ``m``). The thesis raises ``m``
linearly from 4 to 6 while resolution rises: small images cannot carry strong
augmentation, so strength follows resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from smartloader.common.progress import Progress
from smartloader.common.readers import as_float, as_list, fail, join
from smartloader.common.spec import REQUIRED, Field, Section, Typed, raise_problems, valid
from smartloader.schedules._axis import fraction, ramp, resolve

#: Largest magnitude the augment ops define (their strongest setting).
MAX_MAGNITUDE = 10.0
#: The standard strength of the recipe (what ``loader.magnitude`` holds without a schedule).
STANDARD_MAGNITUDE = 5.0


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

    value: float = STANDARD_MAGNITUDE

    needs_total_steps = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.value <= MAX_MAGNITUDE:
            raise ValueError(f"value must be in [0, {MAX_MAGNITUDE}], got {self.value}")

    def __call__(self, progress_or_step: Progress | int) -> float:
        resolve(progress_or_step, None, needs_total=False)
        return self.value


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


MAGNITUDE_TYPES = {
    "constant": ConstantMagnitude,
    "linear": LinearMagnitude,
    "piecewise": PiecewiseMagnitude,
}

MagnitudeSchedule = ConstantMagnitude | LinearMagnitude | PiecewiseMagnitude


# ------------------------------------------------------------------------------ spec

def _magnitude(value: Any, path: str) -> float:
    return as_float(value, path, minimum=0.0, maximum=MAX_MAGNITUDE)


def _points(raw: Any, path: str) -> tuple[tuple[float, float], ...]:
    items = as_list(raw, path)
    if not items:
        raise fail(path, "must not be empty")
    points: list[tuple[float, float]] = []
    for i, item in enumerate(items):
        p = join(path, i)
        item = as_list(item, p)
        if len(item) != 2:
            raise fail(p, "must be [fraction, value]", item)
        f = as_float(item[0], join(p, 0), minimum=0.0, maximum=1.0)
        if points and f <= points[-1][0]:
            raise fail(join(p, 0), f"fractions must increase strictly (previous "
                       f"{points[-1][0]})", f)
        points.append((f, _magnitude(item[1], join(p, 1))))
    return tuple(points)


def _min_le_max(v: dict, given: Any, path: str, problems: list) -> None:
    if valid(v, "min", "max") and v["min"] > v["max"]:
        problems.append(f"{join(path, 'min')}: must be <= max ({v['max']}); use type "
                        f"piecewise for a falling magnitude, got {v['min']!r}")


def _start_lt_end(v: dict, given: Any, path: str, problems: list) -> None:
    if valid(v, "start", "end") and v["start"] >= v["end"]:
        problems.append(f"{join(path, 'start')}: must be < end ({v['end']}), got "
                        f"{v['start']!r}")


def _m(name: str, doc: str) -> Field:
    return Field(name, "float", REQUIRED, minimum=0.0, maximum=MAX_MAGNITUDE, doc=doc)


#: The ``augment:`` section: magnitude m on 0..10, 5 = the recipe's standard strength.
AUGMENT = Typed("augment", (
    ("constant", Section("constant", (_m("value", "magnitude throughout"),),
                         required_message="required for type constant")),
    ("linear", Section("linear", (
        _m("min", "starting magnitude (thesis: 4)"), _m("max", "final magnitude (thesis: 6)"),
        Field("start", "float", 0.0, minimum=0.0, maximum=1.0,
              doc="fraction of training where the ramp begins"),
        Field("end", "float", 1.0, minimum=0.0, maximum=1.0,
              doc="fraction of training where max is reached")),
        checks=(_min_le_max, _start_lt_end), required_message="required for type linear")),
    ("piecewise", Section("piecewise", (
        Field("points", "any", REQUIRED, parse=_points, type_doc="list of [fraction, value]",
              doc="linear through these points, fractions strictly increasing in [0, 1]"),),
        required_message="required for type piecewise")),
), doc="augmentation-magnitude schedule, read by the augment ops through loader.magnitude",
    type_doc="`constant`; `linear`: min to max; `piecewise`: through points")


def magnitude_problems(v: dict, path: str, total_steps: int | None,
                       problems: list[str]) -> None:
    """Relations of a read ``augment`` section with ``total_steps``."""
    if v["type"] != "constant" and total_steps is None:
        problems.append(f"{join(path, 'type')}: {v['type']} follows the fraction of training "
                        f"and needs total_steps (give the loader a length or set total_steps)")


def make_magnitude(v: Any, total_steps: int | None = None) -> MagnitudeSchedule:
    """The schedule of a read ``augment`` section (its problems already reported)."""
    if v["type"] == "constant":
        return ConstantMagnitude(v["value"])
    if v["type"] == "linear":
        return LinearMagnitude(v["min"], v["max"], v["start"], v["end"], total_steps)
    return PiecewiseMagnitude(tuple(v["points"]), total_steps)


def magnitude_from_config(value: Any, path: str = "augment",
                          total_steps: int | None = None) -> MagnitudeSchedule:
    """Build a magnitude schedule from its YAML mapping (``type`` picks the class); every
    problem is reported at once."""
    problems: list[str] = []
    v = AUGMENT.read(value, path, problems)
    if not problems:
        magnitude_problems(v, path, total_steps, problems)
    raise_problems(problems)
    return make_magnitude(v, total_steps)

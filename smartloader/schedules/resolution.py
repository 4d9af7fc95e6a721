"""Training-resolution schedules (thesis Ch. 3.3.2, super progressive learning).

Pure functions of ``(step, total_steps)`` plus one small frozen class per schedule, built
from the ``resolution:`` YAML section. Resolutions are square side lengths in pixels.

Quantisation ("snapping"): a ramp from ``min`` to ``max`` is split into **equal-length
stages**, one per value of :func:`resolution_grid` -- ``min``, every multiple of
``increment`` strictly between, then ``max``. 96 -> 224 in 32-px increments gives the five
stages 96, 128, 160, 192, 224. Why stages rather than rounding the linear value: every
resolution gets the same share of the ramp, both end points are actually trained on
(floor-rounding never reaches ``max``, nearest-rounding gives the end points half a stage),
and the result never leaves ``[min, max]``. Why 32 px: most CNNs downsample 5 times, so a
multiple of 32 keeps feature maps integral and limits the number of distinct input shapes
(each new shape costs a cudnn/compile warm-up).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from smartloader.common.progress import Progress
from smartloader.common.readers import as_int, join
from smartloader.common.spec import REQUIRED, Field, Section, Typed, raise_problems, valid
from smartloader.schedules._axis import ramp, resolve

_INCREMENT = Field("increment", "int", 32, minimum=1,
                   doc="stage spacing in px (multiples of 32 suit 5 stride-2 stages)")
#: Default snapping increment in pixels (5 stride-2 stages in a ResNet: 2**5 = 32).
DEFAULT_INCREMENT = _INCREMENT.default


def resolution_grid(minimum: int, maximum: int, increment: int = DEFAULT_INCREMENT) -> list[int]:
    """Allowed resolutions between ``minimum`` and ``maximum`` (both included), ascending.

    ``resolution_grid(96, 224) == [96, 128, 160, 192, 224]``;
    ``resolution_grid(100, 224) == [100, 128, 160, 192, 224]``.
    """
    if minimum < 1 or maximum < minimum:
        raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
    if increment < 1:
        raise ValueError(f"increment must be >= 1, got {increment}")
    first = (minimum // increment + 1) * increment  # first multiple strictly above min
    inner = list(range(first, maximum, increment))
    return [minimum] + inner + ([maximum] if maximum > minimum else [])


def staged(position: float, grid: list[int]) -> int:
    """Value of ``grid`` at ramp ``position`` in [0, 1], in equal-length stages."""
    n = len(grid)
    # The 1e-9 keeps e.g. position 0.6 with 5 stages in stage 3, not 2.999... -> 2.
    index = int(position * n + 1e-9)
    return grid[min(max(index, 0), n - 1)]


def progressive_resolution(step: int, total_steps: int, minimum: int, maximum: int,
                           start: float = 0.0, end: float = 1.0,
                           increment: int = DEFAULT_INCREMENT) -> int:
    """Progressive learning (Tan & Le 2021): ``minimum`` before fraction ``start``, rising in
    equal stages to ``maximum`` at fraction ``end``, ``maximum`` after.

    >>> [progressive_resolution(s, 100, 96, 224) for s in (0, 19, 20, 80, 99, 100)]
    [96, 96, 128, 224, 224, 224]
    """
    grid = resolution_grid(minimum, maximum, increment)
    return staged(ramp(step, total_steps, start, end), grid)


def super_progressive_resolution(step: int, total_steps: int, minimum: int, maximum: int,
                                 warmup_steps: int,
                                 increment: int = DEFAULT_INCREMENT) -> int:
    """Super progressive learning (thesis §3.3.2): ``maximum`` for the first
    ``warmup_steps`` steps (the learning-rate warm-up, where low resolution destabilises
    training), then drop to ``minimum`` and rise in equal stages to ``maximum`` at
    ``total_steps``.

    >>> [super_progressive_resolution(s, 110, 96, 224, 10) for s in (0, 9, 10, 29, 30, 109)]
    [224, 224, 96, 96, 128, 224]
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got {warmup_steps}, "
                         f"{total_steps}")
    if step < warmup_steps:
        return maximum
    grid = resolution_grid(minimum, maximum, increment)
    return staged(ramp(step, total_steps, warmup_steps / total_steps, 1.0), grid)


def distinct_resolutions(schedule: Callable[[int], int], total_steps: int) -> list[int]:
    """Sorted distinct values ``schedule(step)`` takes over ``range(total_steps)``.

    Its length is the number of distinct input shapes a run sees (each costs a warm-up
    of cudnn autotuning / ``torch.compile``).
    """
    return sorted({schedule(step) for step in range(total_steps)})


def score_resolution(resolution: int, score_scale: float) -> int:
    """Scoring resolution ``max(1, round(score_scale * resolution))``.

    The default ``score_scale`` 0.43 maps 224 -> 96, the paper's scoring resolution.
    """
    return max(1, round(score_scale * resolution))


# --------------------------------------------------------------------------- classes

@dataclass(frozen=True)
class ConstantResolution:
    """Train at ``value`` px throughout (no ``total_steps`` needed)."""

    value: int

    needs_total_steps = False

    def __post_init__(self) -> None:
        if self.value < 1:
            raise ValueError(f"value must be >= 1, got {self.value}")

    @property
    def maximum(self) -> int:
        return self.value

    def __call__(self, progress_or_step: Progress | int) -> int:
        resolve(progress_or_step, None, needs_total=False)
        return self.value

@dataclass(frozen=True)
class ProgressiveResolution:
    """:func:`progressive_resolution` with its parameters; ``start``/``end`` default to
    0.0/1.0 (ramp over the whole run, as in EfficientNetV2's progressive learning)."""

    minimum: int
    maximum: int
    start: float = 0.0
    end: float = 1.0
    increment: int = DEFAULT_INCREMENT
    total_steps: int | None = None

    needs_total_steps = True

    def __post_init__(self) -> None:
        resolution_grid(self.minimum, self.maximum, self.increment)  # validates
        if not 0.0 <= self.start < self.end <= 1.0:
            raise ValueError(f"need 0 <= start < end <= 1, got {self.start}, {self.end}")

    def __call__(self, progress_or_step: Progress | int) -> int:
        step, total = resolve(progress_or_step, self.total_steps)
        return progressive_resolution(step, total, self.minimum, self.maximum,
                                      self.start, self.end, self.increment)

@dataclass(frozen=True)
class SuperProgressiveResolution:
    """:func:`super_progressive_resolution`; the warm-up is ``warmup_steps`` or
    ``warmup_fraction`` of ``total_steps`` (exactly one). Set it equal to the learning-rate
    warm-up: the thesis keeps full resolution exactly while the learning rate is small."""

    minimum: int
    maximum: int
    warmup_steps: int | None = None
    warmup_fraction: float | None = None
    increment: int = DEFAULT_INCREMENT
    total_steps: int | None = None

    needs_total_steps = True

    def __post_init__(self) -> None:
        resolution_grid(self.minimum, self.maximum, self.increment)
        if (self.warmup_steps is None) == (self.warmup_fraction is None):
            raise ValueError("give exactly one of warmup_steps, warmup_fraction")
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")

    def warmup_for(self, total_steps: int) -> int:
        """Warm-up length in steps for a run of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_fraction * total_steps)

    def __call__(self, progress_or_step: Progress | int) -> int:
        step, total = resolve(progress_or_step, self.total_steps)
        return super_progressive_resolution(step, total, self.minimum, self.maximum,
                                            self.warmup_for(total), self.increment)


RESOLUTION_TYPES = {
    "constant": ConstantResolution,
    "progressive": ProgressiveResolution,
    "super_progressive": SuperProgressiveResolution,
}

ResolutionSchedule = ConstantResolution | ProgressiveResolution | SuperProgressiveResolution


# ------------------------------------------------------------------------------ spec

def _min_le_max(v: dict, given: Any, path: str, problems: list) -> None:
    if valid(v, "min", "max") and v["min"] > v["max"]:
        problems.append(f"{join(path, 'min')}: must be <= max ({v['max']}), got {v['min']!r}")


def _start_lt_end(v: dict, given: Any, path: str, problems: list) -> None:
    if valid(v, "start", "end") and v["start"] >= v["end"]:
        problems.append(f"{join(path, 'start')}: must be < end ({v['end']}), got "
                        f"{v['start']!r}")


def _one_warmup(v: dict, given: Any, path: str, problems: list) -> None:
    if "warmup_steps" in given and "warmup_fraction" in given:
        problems.append(f"{join(path, 'warmup_fraction')}: give warmup_steps or "
                        f"warmup_fraction, not both")


def _px(name: str, doc: str) -> Field:
    return Field(name, "int", REQUIRED, minimum=1, doc=doc)


def _bare_int(raw: Any, path: str) -> Any:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return {"type": "constant", "value": as_int(raw, path, minimum=1)}
    return raw


_START = Field("start", "float", 0.0, minimum=0.0, maximum=1.0,
               doc="fraction of training where the ramp begins")
_END = Field("end", "float", 1.0, minimum=0.0, maximum=1.0,
             doc="fraction of training where max is reached")
#: The ``resolution:`` section (a bare integer N is ``{type: constant, value: N}``).
RESOLUTION = Typed("resolution", (
    ("constant", Section("constant", (_px("value", "training resolution (px) throughout"),),
                         required_message="required for type constant")),
    ("progressive", Section("progressive", (
        _px("min", "starting resolution (px)"), _px("max", "final (full) resolution (px)"),
        _START, _END, _INCREMENT), checks=(_min_le_max, _start_lt_end),
        required_message="required for type progressive")),
    ("super_progressive", Section("super_progressive", (
        _px("min", "resolution (px) right after the warm-up"),
        _px("max", "full resolution (px), also during the warm-up"),
        Field("warmup_steps", "int", None, minimum=0, default_doc="`lr.warmup_steps`",
              doc="warm-up at full resolution, in steps (< total_steps)"),
        Field("warmup_fraction", "float", None, minimum=0.0, maximum=1.0, max_exclusive=True,
              default_doc="-", doc="the warm-up as a fraction of total_steps, instead"),
        _INCREMENT), checks=(_min_le_max, _one_warmup),
        required_message="required for type super_progressive")),
), doc="training-resolution schedule (square side in px)",
    type_doc="`constant`; `progressive`: min to max in equal stages; `super_progressive`: max "
             "during the lr warm-up, then min rising to max", shorthand=_bare_int)


def resolution_problems(v: dict, path: str, total_steps: int | None,
                        default_warmup_steps: Any, problems: list[str]) -> None:
    """Relations of a read ``resolution`` section with ``total_steps`` and the lr warm-up
    (``default_warmup_steps``; INVALID when the lr section could not be read)."""
    kind = v["type"]
    if kind == "super_progressive":
        steps = v["warmup_steps"]
        if valid(v, "warmup_steps") and steps is not None and total_steps is not None \
                and steps >= total_steps:
            problems.append(f"{join(path, 'warmup_steps')}: must be < total_steps "
                            f"({total_steps}), got {steps!r}")
        if steps is None and v["warmup_fraction"] is None and default_warmup_steps is None:
            problems.append(f"{join(path, 'warmup_steps')}: required (or warmup_fraction) for "
                            f"type super_progressive when lr has no warmup_steps")
    if kind != "constant" and total_steps is None:
        problems.append(f"{join(path, 'type')}: {kind} follows the fraction of training and "
                        f"needs total_steps (give the loader a length or set total_steps)")


def make_resolution(v: Any, total_steps: int | None = None,
                    default_warmup_steps: int | None = None) -> ResolutionSchedule:
    """The schedule of a read ``resolution`` section (its problems already reported)."""
    if v["type"] == "constant":
        return ConstantResolution(v["value"])
    if v["type"] == "progressive":
        return ProgressiveResolution(v["min"], v["max"], v["start"], v["end"], v["increment"],
                                     total_steps)
    steps, frac = v["warmup_steps"], v["warmup_fraction"]
    if steps is None and frac is None:
        steps = default_warmup_steps
    return SuperProgressiveResolution(v["min"], v["max"], steps, frac, v["increment"],
                                      total_steps)


def resolution_from_config(value: Any, path: str = "resolution",
                           total_steps: int | None = None,
                           default_warmup_steps: int | None = None) -> ResolutionSchedule:
    """Build a resolution schedule from its YAML mapping (``type`` picks the class); every
    problem is reported at once. A bare integer N is ``{type: constant, value: N}``."""
    problems: list[str] = []
    v = RESOLUTION.read(value, path, problems)
    if not problems:
        resolution_problems(v, path, total_steps, default_warmup_steps, problems)
    raise_problems(problems)
    return make_resolution(v, total_steps, default_warmup_steps)

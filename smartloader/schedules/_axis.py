"""The progress axis every schedule is a function of.

A schedule is called with a :class:`~smartloader.common.progress.Progress` or a plain step
(``int``). Fractions of training (``start``, ``end``, ``warmup_fraction``) are always
``step / total_steps``, the same axis as :attr:`Progress.fraction`, so a value reached "at
fraction 1.0" is reached at ``step == total_steps`` (one step after the last training step).
"""
from __future__ import annotations

from smartloader.common.progress import Progress


def resolve(progress_or_step: Progress | int, total_steps: int | None,
            *, needs_total: bool = True) -> tuple[int, int | None]:
    """``(step, total_steps)`` from a Progress or a step.

    A Progress that carries ``total_steps`` wins over the schedule's own, so the core can
    pass its live value. Raises ``ValueError`` when the schedule needs ``total_steps`` and
    neither source has it, or when the step is negative.
    """
    if isinstance(progress_or_step, Progress):
        step = progress_or_step.step
        total = progress_or_step.total_steps or total_steps
    elif isinstance(progress_or_step, bool) or not isinstance(progress_or_step, int):
        raise TypeError(
            f"expected a Progress or an int step, got {type(progress_or_step).__name__}")
    else:
        step, total = progress_or_step, total_steps
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if needs_total and not total:
        raise ValueError("this schedule needs total_steps (pass it to the schedule or in "
                         "the Progress)")
    return step, total


def fraction(step: int, total_steps: int) -> float:
    """``step / total_steps`` clipped to [0, 1]."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return min(1.0, max(0.0, step / total_steps))


def ramp(step: int, total_steps: int, start: float, end: float) -> float:
    """Position in [0, 1] of ``step`` on a ramp from fraction ``start`` to ``end``.

    0 before ``start``, 1 at and after ``end``; ``start == end`` gives a step function.
    """
    f = fraction(step, total_steps)
    if f >= end:
        return 1.0
    if f <= start:
        return 0.0
    return (f - start) / (end - start)

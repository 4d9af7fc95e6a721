"""The one value every schedule is a function of."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where training is.

    ``step`` counts yielded training batches from 0 over the whole run, ``epoch`` is the
    wrapped loader's epoch, ``total_steps`` the planned number of steps (``None`` when
    unknown). Schedules take a ``Progress`` (or a plain step) and hold no state, so they
    resume for free.
    """

    step: int
    epoch: int = 0
    total_steps: int | None = None

    @property
    def fraction(self) -> float:
        """Fraction of training done, ``step / total_steps`` clipped to [0, 1]."""
        if not self.total_steps:
            raise ValueError("Progress.fraction needs total_steps")
        return min(1.0, max(0.0, self.step / self.total_steps))

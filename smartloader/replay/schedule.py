"""When to replay: a pure function of the step counter (OPIN's k replay steps, or a mixed batch).

:func:`replay_plan` is the pure function; :class:`ReplayScheduler` is the thin configured
class the core wrapper calls once per yielded batch::

    plan = scheduler.plan(step, available=len(memory))
    # take plan.n_fresh samples from the wrapped loader and plan.n_replay from the memory
    # (memory.sample(plan.n_replay, progress)); add the fresh ones to the memory afterwards.

It holds no state, so it resumes for free from the step counter alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("steps", "mix")


@dataclass(frozen=True)
class ReplayPlan:
    """What one yielded batch is made of.

    ``n_fresh`` samples come from the wrapped loader and ``n_replay`` from the replay memory;
    ``n_fresh + n_replay == batch_size``. ``fresh`` is True when the batch holds any fresh
    sample (every batch in mode ``mix``; one batch in ``k + 1`` in mode ``steps``).
    """

    n_fresh: int
    n_replay: int

    @property
    def fresh(self) -> bool:
        return self.n_fresh > 0


def replay_plan(step: int, batch_size: int, *, mode: str = "steps", k: int = 1,
                fraction: float = 0.25, available: int | None = None) -> ReplayPlan:
    """The make-up of yielded batch number ``step`` (0-based, counted over the whole run).

    ``steps`` (OPIN): step ``s`` is fresh when ``s % (k + 1) == 0``, else a pure replay batch
    of ``batch_size`` memory samples -- ``k`` replay steps after each fresh step, so one pass
    costs ``k + 1`` epochs of compute. ``mix``: every batch takes
    ``min(round(fraction * batch_size), batch_size - 1)`` samples from memory and the rest
    fresh, so the batch size (and with it BatchNorm statistics and the learning-rate scale)
    never changes, and at least one fresh sample keeps the stream moving.

    ``available`` is the number of samples in the memory (``None``: enough). A replay step with
    an empty memory becomes fresh, and a mixed batch takes at most ``available`` memory
    samples, so the very first batch is always fresh. (A memory with fewer samples than
    requested but not empty is drawn with replacement by ``ReplayMemory.sample``.)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if mode == "steps":
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        replay = step % (k + 1) != 0 and (available is None or available > 0)
        return ReplayPlan(0, batch_size) if replay else ReplayPlan(batch_size, 0)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    # At least one fresh sample per batch, or the stream would never advance.
    n_replay = min(round(fraction * batch_size), batch_size - 1)
    if available is not None:
        n_replay = min(n_replay, available)
    return ReplayPlan(batch_size - n_replay, n_replay)


@dataclass(frozen=True)
class ReplayScheduler:
    """:func:`replay_plan` with its settings fixed (built from YAML by ``ReplayConfig``).

    ``batch_size`` is the size of every yielded batch, ``k`` the number of replay steps per
    fresh step (mode ``steps``), ``fraction`` the share of each batch from memory (mode
    ``mix``).
    """

    batch_size: int
    mode: str = "steps"
    k: int = 1
    fraction: float = 0.25

    def __post_init__(self) -> None:
        replay_plan(0, self.batch_size, mode=self.mode, k=self.k, fraction=self.fraction)

    def plan(self, step: int, available: int | None = None) -> ReplayPlan:
        """Make-up of yielded batch ``step``; see :func:`replay_plan`."""
        return replay_plan(step, self.batch_size, mode=self.mode, k=self.k,
                           fraction=self.fraction, available=available)

    @property
    def fresh_per_step(self) -> float:
        """Average fresh samples per yielded batch (steady state, memory non-empty)."""
        if self.mode == "steps":
            return self.batch_size / (self.k + 1)
        return float(self.plan(0, None).n_fresh)

    def steps_for(self, fresh_samples: int) -> int:
        """Yielded batches needed to consume ``fresh_samples`` fresh samples (steady state).

        Use it for ``total_steps`` of a one-pass run: in mode ``steps`` it is ``(k + 1)`` times
        the fresh batch count, the last fresh step followed by its ``k`` replay steps.
        """
        if self.mode == "steps":
            return math.ceil(fresh_samples / self.batch_size) * (self.k + 1)
        return math.ceil(fresh_samples / self.plan(0, None).n_fresh)

    def preview(self, steps: int, available: int | None = None) -> list[ReplayPlan]:
        """The plans of the first ``steps`` batches, to inspect a schedule before training."""
        return [self.plan(s, available) for s in range(steps)]

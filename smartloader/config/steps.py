"""Training steps vs wrapped batches: the one model of how a run consumes its loader.

A *step* is one batch SmartLoader yields; a *wrapped batch* is one batch of the loader it
wraps. The two axes differ because

- a uniform step consumes one wrapped batch;
- a selection step consumes ``pool_factor`` of them (a pool), in the phase of the step the
  pool starts in; a pool never crosses the end of an epoch, so the last one may be short;
- with ``replay: {mode: steps, k: K}`` each fresh step in a phase with replay on is followed
  by ``K`` replay steps that consume no wrapped batch.

``len(loader)``, the adapters' resolution plan (FFCV and DALI set their decode size per
wrapped batch) and ``smartloader plan`` all read this module, so they agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from smartloader.config.phases import Phase, phase_at, resolve_phases
from smartloader.errors import ConfigError

__all__ = ["Consumption", "epoch_steps", "steps_in_epoch", "loader_batch_steps",
           "steps_for_epochs", "epochs_for_steps", "run_steps", "unreached_phases"]


@dataclass(frozen=True)
class Consumption:
    """How one run turns wrapped batches into steps.

    Args:
        phases: the resolved phases.
        pool_factor: wrapped batches per selection pool.
        replay_steps: replay steps after each fresh step in a phase with replay on (``k`` of
            ``replay: {mode: steps}``; 0 otherwise).
    """

    phases: tuple[Phase, ...]
    pool_factor: int
    replay_steps: int = 0

    @classmethod
    def of(cls, config, total_steps: int | None = None) -> "Consumption":
        """The model for a :class:`~smartloader.config.Config` (its phases resolved against
        ``total_steps`` when given, else the config's own)."""
        rp = config.replay
        extra = rp.k if rp is not None and rp.mode == "steps" else 0
        phases = (config.resolve_phases() if total_steps is None else
                  resolve_phases(config.phases, total_steps, shrink=config.default_phases))
        return cls(tuple(phases), config.pool_factor, extra)

    def batches_per_step(self, step: int) -> int:
        """Wrapped batches a fresh step at ``step`` draws (before the epoch end cuts it)."""
        return self.pool_factor if phase_at(self.phases, step).selects else 1

    def trailing_replays(self, step: int) -> int:
        """Replay steps that follow a fresh step at ``step``."""
        return self.replay_steps if phase_at(self.phases, step).replay else 0


def epoch_steps(model: Consumption, start_step: int, batches: int
                ) -> Iterator[tuple[int, int, int]]:
    """``(step, first wrapped batch, wrapped batches consumed)`` for every step of an epoch of
    ``batches`` wrapped batches that starts at ``start_step``; replay steps consume 0."""
    step, consumed = start_step, 0
    while consumed < batches:
        take = min(model.batches_per_step(step), batches - consumed)
        replays = model.trailing_replays(step)
        yield step, consumed, take
        for r in range(replays):
            yield step + 1 + r, consumed + take, 0
        consumed += take
        step += 1 + replays


def steps_in_epoch(model: Consumption, start_step: int, batches: int) -> int:
    """How many steps an epoch of ``batches`` wrapped batches yields from ``start_step``
    (the count of :func:`epoch_steps`, computed a phase at a time rather than a step at a
    time, so planning a long run stays cheap)."""
    step, left = start_step, batches
    while left > 0:
        phase = phase_at(model.phases, step)
        per = model.pool_factor if phase.selects else 1
        stride = 1 + model.trailing_replays(step)
        if phase.stop is None or step >= phase.stop:  # the last phase goes on
            fresh = -(-left // per)
        else:
            fresh = min(-(-(phase.stop - step) // stride), -(-left // per))
        left -= min(fresh * per, left)
        step += fresh * stride
    return step - start_step


def loader_batch_steps(config, batches_per_epoch: int) -> Iterator[tuple[int, int, int]]:
    """``(wrapped batch index over the run, epoch, step it feeds)`` for every wrapped batch,
    endlessly, in the order SmartLoader consumes them.

    Exact for a run that starts at step 0 and goes epoch after epoch with
    ``batches_per_epoch`` batches each; it drifts after a ``set_epoch`` jump, a resume from
    another position, when ranks agree on fewer batches, or when the loader yields fewer
    batches than its ``len``.
    """
    if batches_per_epoch < 1:
        raise ValueError(f"batches_per_epoch must be >= 1, got {batches_per_epoch!r}")
    model = Consumption.of(config)
    step = batch = epoch = 0
    while True:
        last = step
        for s, _, take in epoch_steps(model, step, batches_per_epoch):
            for _ in range(take):
                yield batch, epoch, s
                batch += 1
            last = s
        step = last + 1
        epoch += 1


def run_steps(model: Consumption, epochs: int, batches: int) -> int:
    """Steps ``epochs`` whole epochs of ``batches`` wrapped batches yield from step 0."""
    step = 0
    for _ in range(epochs):
        step += steps_in_epoch(model, step, batches)
    return step


def steps_for_epochs(config, epochs: int, batches: int) -> int:
    """``total_steps`` of a run of ``epochs`` epochs of ``batches`` wrapped batches.

    The phases depend on ``total_steps`` (fractions) and the steps an epoch yields depend on
    the phases (a selection step reads ``pool_factor`` batches), so this looks for the
    ``total_steps`` the run yields exactly: by iteration, then among the nearby values. When
    rounding leaves none, it takes the largest value below what the run yields, so every
    phase is entered and the run goes a few steps past it (:func:`run_steps` says how many).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an integer >= 1, got {batches!r}")

    def yields(total: int) -> int:
        try:
            return run_steps(Consumption.of(config, total), epochs, batches)
        except ConfigError as exc:
            raise ConfigError(f"total_epochs: {epochs} epoch(s) of {batches} wrapped batches "
                              f"are about {total} steps, too few for the phases: "
                              f"{exc.problems[0]}") from None

    total, seen = epochs * batches, []
    for _ in range(64):
        got = yields(total)
        if got == total:
            return total
        if got in seen:
            break
        seen.append(total)
        total = got
    width = config.pool_factor * epochs + 1
    lo, hi = max(1, min(seen) - width), max(seen) + width
    exact = [t for t in range(lo, hi + 1) if yields(t) == t]
    if exact:
        return min(exact, key=lambda t: (abs(t - total), t))
    below = [t for t in range(lo, hi + 1) if yields(t) > t]
    return max(below) if below else total


def epochs_for_steps(config, steps: int, batches: int) -> int:
    """How many epochs of ``batches`` wrapped batches a loop needs for SmartLoader to yield
    ``steps`` steps (``for epoch in range(n)`` then reaches the cool-down)."""
    model = Consumption.of(config, steps)
    step = epochs = 0
    while step < steps:
        step += steps_in_epoch(model, step, batches)
        epochs += 1
    return epochs


def unreached_phases(phases: Sequence[Phase], steps: int) -> list[Phase]:
    """The phases a run of ``steps`` steps never enters (they start at or after it)."""
    return [p for p in phases if p.start >= steps]

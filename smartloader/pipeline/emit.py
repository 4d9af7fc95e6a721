"""What every yielded step goes through, on either epoch loop.

:func:`enter_phase` starts a step (its schedules, the phase it is in, the phase-change
log line); :func:`emit` runs the transform stages on the step's batch, keeps its numbers
(a :class:`~smartloader.pipeline.stats.StepStats` made only when read, by
:func:`step_stats`), counts the step and calls the callback; :func:`report_fallbacks`
warns about pools drawn uniformly because of NaN scores. The loops are
:mod:`smartloader.pipeline.epoch` (batches of the wrapped loader) and
:mod:`smartloader.pipeline.two_resolution_epoch` (samples loaded by index).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any

from smartloader.common import batch as B
from smartloader.config.phases import Phase, phase_at
from smartloader.pipeline.stats import StepStats, materialize
from smartloader.pipeline.step import Selected

__all__ = ["enter_phase", "emit", "step_stats", "report_fallbacks"]

logger = logging.getLogger("smartloader")


def enter_phase(sl: Any) -> Phase:
    """Start the step at the cursor: its schedules, and the phase it is in (logged when it
    changes, with a warning once past ``total_steps``)."""
    cur = sl._cursor
    step = cur.step
    sl._schedules.begin_step(step)
    phase = cur.phase
    if phase is not None and step in phase:
        return phase  # the common case: still in the phase of the last pool
    phase = cur.phase = phase_at(sl._phases, step)
    if phase.name != sl._last_phase:
        logger.info("step %d: phase %r (%s%s)", step, phase.name, phase.selection,
                    f", beta {phase.beta:g}" if phase.selects else "")
        sl._last_phase = phase.name
    total = sl.config.total_steps
    if sl._warn_past_end and step >= sl._run_end:
        logger.warning("step %d is past total_steps %d; phase %r goes on", step, total,
                       phase.name)
        sl._warn_past_end = False
    return phase


def emit(sl: Any, chosen: Selected, phase: Phase) -> Any:
    """The transform stages, the step's numbers, the step count and the callback.

    The numbers are kept as a tuple and become a :class:`StepStats` only when read
    (``loader.stats``, or a callback), so a uniform pass-through step costs a few
    microseconds."""
    cur = sl._cursor
    keys = sl._keys
    sl._scoring.remember(chosen.batch, keys)
    batch = sl._transform(chosen.batch, keys)
    batch, res, mag = sl._schedules.finish(batch, keys[0], cur.step)
    scoring, replay = sl._scoring, sl._replay
    graphs = None if not sl._compile.active else sl._compile.observe(
        cur.step, B.get_field(batch, keys[0]),
        sl._handle.last_shape if chosen.scored_by == "forward" else None)
    cur.last = (cur.step, cur.epoch, phase, chosen, res, mag, sl._chooser.fallbacks,
                cur.short_pools, scoring.forwards, scoring.skipped, scoring.flagged,
                replay.replayed, None if replay.memory is None else replay.memory.nbytes,
                scoring.train_time_s, graphs)
    cur.step += 1
    if sl._callback is not None:
        sl._callback(materialize(step_stats(cur.last, keys)))
    return batch


def step_stats(last: tuple, keys: tuple) -> StepStats:
    """The :class:`StepStats` of the numbers :func:`emit` kept."""
    (step, epoch, phase, chosen, res, mag, fallbacks, short_pools, forwards, skipped,
     flagged, replayed, nbytes, train_s, graphs) = last
    size = chosen.size
    if size is None:  # a pass-through batch: its size is read only now
        size = B.batch_size_of(B.get_field(chosen.batch, keys[0]))
    return StepStats(
        step=step, epoch=epoch, phase=phase.name, selection=phase.selection, beta=phase.beta,
        pool_size=size if chosen.pool_size is None else chosen.pool_size, batch_size=size,
        pool_loss_mean=chosen.pool_loss, selected_loss_mean=chosen.selected_loss,
        pool_time_s=chosen.times[0], score_time_s=chosen.times[1],
        select_time_s=chosen.times[2], uniform_fallbacks=fallbacks, short_pools=short_pools,
        scored_by=chosen.scored_by, scoring_forwards=forwards, forwards_skipped=skipped,
        noisy_flagged=flagged, replayed=replayed, replay_nbytes=nbytes, resolution=res,
        magnitude=mag, scorer_train_time_s=train_s, compiled_graphs=graphs)


def report_fallbacks(sl: Any) -> None:
    """Warn once about pools drawn uniformly because of NaN/inf scores since the last call."""
    total = int(sl._chooser.fallbacks)
    if total > sl._fallbacks_reported:
        msg = (f"smartloader: {total - sl._fallbacks_reported} step(s) had NaN or infinite "
               f"scoring losses and drew their batch uniformly (step {sl._cursor.step}; "
               f"{total} in total)")
        logger.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        sl._fallbacks_reported = total

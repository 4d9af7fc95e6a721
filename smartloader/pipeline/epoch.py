"""The epoch loop: read the wrapped loader, pool its batches, and yield one batch per step.

Each ``iter(smartloader)`` runs :func:`run_epoch` once. In a uniform phase a wrapped batch
passes through one for one; in a selection phase ``pool_factor`` of them form a pool and the
:class:`~smartloader.pipeline.step.SelectionStep` chooses the batch to train on. Every
yielded batch goes through :func:`emit` (batch transform, resolution, stats, step count), and
owed replay steps follow it. A phase is fixed per pool: a pool started in a selection phase
completes. How many steps an epoch yields is :mod:`smartloader.config.steps`'s model.

When the wrapped loader has a ``len()``, the last pool is chosen as soon as the epoch's last
wrapped batch is read, before the wrapped iterator is asked for more: a loader that reads one
batch ahead still reports the end of its epoch while the last step trains (accelerate's
``DataLoaderShard`` sets ``end_of_dataloader``, which makes ``accelerator.accumulate`` sync
the gradients of the epoch's last step). The wrapped iterator is then read to its end, so it
runs its own end-of-epoch code.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Iterator

import torch

from smartloader.common import batch as B
from smartloader.common.epochs import forward_set_epoch, mix_seed
from smartloader.config.phases import Phase, phase_at
from smartloader.pipeline.stats import StepStats, materialize
from smartloader.pipeline import step as _step
from smartloader.pipeline import two_resolution_epoch
from smartloader.pipeline.step import Selected

__all__ = ["run_epoch", "emit", "report_fallbacks"]

logger = logging.getLogger("smartloader")


def run_epoch(sl: Any, token: int) -> Iterator[Any]:
    """One epoch of ``sl`` (a :class:`~smartloader.SmartLoader`) from its cursor."""
    if sl._pool_source is not None:  # pool_source two_resolution: samples drawn by index
        return (yield from two_resolution_epoch.run_epoch(sl, token))
    cur = sl._cursor
    epoch = cur.epoch
    forward_set_epoch(sl.loader, epoch)
    limit = sl.distributed.epoch_limit(sl.loader, epoch)
    end = limit if limit is not None else _length(sl.loader)  # None: found at StopIteration
    gen = cur.generator_on(sl._handle.device)
    resume, cur.resume = cur.resume, None
    if resume is not None and resume["epoch"] == epoch:
        saved_on = torch.device(resume["generator_device"])
        if saved_on.type != gen.device.type:  # the state was checked for its own device
            cur.resume = resume
            raise RuntimeError(
                f"cannot resume: the state's selection generator was saved on {saved_on}, "
                f"the model is now on {gen.device}; move the model to {saved_on.type} "
                f"before iterating")
        gen.set_state(resume["generator"])
        resumed, cur.epoch_start_step = resume["consumed"], resume["epoch_start_step"]
    else:
        gen.manual_seed(mix_seed(sl.config.seed, epoch, sl._rank))
        resumed, cur.epoch_start_step = 0, cur.step
    inner, cur.loader_state = cur.loader_state, None
    if inner is not None:  # the wrapped loader continues from its own saved position
        sl.loader.load_state_dict(inner)
    skip = 0 if inner is not None else resumed  # without it: re-read the consumed batches
    sl._scoring.start_epoch(epoch, resumed=bool(resumed))
    cur.consumed = resumed - skip
    cur.active = True
    cur.mid_epoch = True
    it = iter(sl.loader)
    try:
        for _ in range(skip):
            try:
                next(it)
            except StopIteration:
                raise RuntimeError(
                    f"cannot resume: the wrapped loader yields only {cur.consumed} batches in "
                    f"epoch {epoch}, the saved state had consumed {skip}. Is it "
                    f"deterministic per epoch? A loader that keeps its own position (torchdata's "
                    f"StatefulDataLoader) resumes without re-reading") from None
            cur.consumed += 1
        if resumed:
            if skip:
                logger.info("resumed epoch %d: re-read %d wrapped batches", epoch, skip)
            else:
                logger.info("resumed epoch %d after %d wrapped batches from the wrapped "
                            "loader's own state", epoch, resumed)
            if sl._keys is None and sl._replay.pending:
                sl._inspect_first(sl._replay.template)
            yield from _replays(sl)  # replay steps owed when the state was saved
        if limit is not None:  # every rank reads the same number of batches
            it = sl.distributed.take(it, limit - cur.consumed)
        pool: list = []
        sizes: list[int] = []
        phase = phase_at(sl.phases, cur.step)
        for batch in it:
            if token != cur.token:
                raise RuntimeError("this SmartLoader iterator was superseded by a newer "
                                   "iter(); use one iterator at a time")
            cur.consumed += 1
            if sl._keys is None:
                sl._inspect_first(batch)
            if not pool:
                phase = _enter_phase(sl)
            if not phase.selects:
                batch = sl._replay.fresh(batch, sl._keys, None, phase.replay, cur.step,
                                        sl.magnitude)
                yield emit(sl, Selected(batch, None, None), phase)
                if sl._replay.pending:
                    yield from _replays(sl)
                continue
            n = B.batch_size_of(B.get_field(batch, sl._keys[0]))
            pool.append(batch)
            sizes.append(n)
            if len(pool) == sl.config.pool_factor or cur.consumed == end:
                if len(pool) < sl.config.pool_factor:
                    cur.short_pools += 1
                yield _select(sl, pool, sizes, phase)
                pool, sizes = [], []
                yield from _replays(sl)
        if pool:
            cur.short_pools += 1
            yield _select(sl, pool, sizes, phase)
            yield from _replays(sl)
        report_fallbacks(sl)
        cur.epoch = epoch + 1
        cur.mid_epoch = False
        cur.consumed = 0
    finally:
        if token == cur.token:
            cur.active = False


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _select(sl: Any, pool: list, sizes: list[int], phase: Phase) -> Any:
    k = sl._batch_size or sizes[0]
    chosen = sl._selection_step(pool, sizes, phase, k, sl._keys, sl._cursor.step,
                               sl._cursor.generator, sl.magnitude)
    if chosen.scored_by is not None and _step.host_reads_cheap(sl._handle.device):
        report_fallbacks(sl)
    return emit(sl, chosen, phase)


def _enter_phase(sl: Any) -> Phase:
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


def _replays(sl: Any) -> Iterator[Any]:
    """The replay steps owed after a fresh batch (``replay: {mode: steps}``), one step each."""
    while sl._replay.pending > 0:
        step = sl._cursor.step
        sl._schedules.begin_step(step)
        batch = sl._replay.next_replay(sl._keys, step, sl.magnitude)
        if batch is None:
            return
        n = B.batch_size_of(B.get_field(batch, sl._keys[0]))
        yield emit(sl, Selected(batch, n, n), phase_at(sl.phases, step))


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

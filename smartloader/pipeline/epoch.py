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
from typing import Any, Iterator

import torch

from smartloader.common import batch as B
from smartloader.common.epochs import forward_set_epoch, mix_seed
from smartloader.config.phases import Phase, phase_at
from smartloader.pipeline import step as _step
from smartloader.pipeline import two_resolution_epoch
from smartloader.pipeline.emit import emit, enter_phase, report_fallbacks
from smartloader.pipeline.step import Selected

__all__ = ["run_epoch"]

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
                phase = enter_phase(sl)
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

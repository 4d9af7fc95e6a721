"""The epoch loop of ``pool_source: {type: two_resolution}`` (the counterpart of
:mod:`smartloader.pipeline.epoch` for samples loaded by index).

An epoch is a queue of planned steps (:class:`_Job`), from
:func:`smartloader.config.steps.epoch_steps`: a fresh step takes its slice of the epoch's
index stream (one batch, or ``pool_factor`` batches to select from), a replay step
(``replay: {mode: steps}``) takes none. Each step goes through

1. **queued** (``fill``): the pool's views (a selection step), or the batch itself (a uniform
   step without replay), start loading, up to ``lookahead`` steps ahead;
2. **planned** (``prepare``), always one step before it is yielded: a selection step's views
   are scored and its batch chosen; with ``replay:`` the fresh batch goes into the memory
   and a replay step draws its batch from it (:class:`~smartloader.replay.by_index.IndexReplay`);
   then the batch's full-resolution samples are queued;
3. **yielded**: its samples are collected and go through
   :func:`~smartloader.pipeline.emit.emit` like any other step.

Because step ``t + 1`` is planned before step ``t`` is yielded, a state taken after step
``t`` holds that plan (``state.pool_source.pending``); a resumed run uses it instead of
planning step ``t + 1`` again, and yields exactly the batches of the uninterrupted run.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch

from smartloader.common import batch as B
from smartloader.common.epochs import mix_seed
from smartloader.config.phases import phase_at
from smartloader.config.steps import epoch_steps
from smartloader.pipeline.emit import emit, enter_phase, report_fallbacks
from smartloader.pipeline.probe import inspect_first
from smartloader.pipeline.step import Selected, host_reads_cheap
from smartloader.pipeline.two_resolution import TwoResolutionSource
from smartloader.replay.by_index import IndexReplay, ROW_KEYS

__all__ = ["run_epoch"]

logger = logging.getLogger("smartloader")


@dataclass
class _Job:
    """One planned step: its indices, and where its samples are in loading."""

    step: int
    first: int          # first wrapped batch of the epoch it consumes
    take: int           # wrapped batches it consumes; 0: a replay step
    indices: torch.Tensor
    selects: bool       # chooses from a pool (False: uniform, a short last pool, replay)
    seeds: torch.Tensor | None = None  # the samples' load seeds (None: per position)
    low: list[tuple] | None = None     # (ticket, samples, offset, buffer) of each chunk
    need: torch.Tensor | None = None   # the indices whose views ``low`` loads
    full: list[tuple] | None = None
    chosen: Selected | None = None     # numbers of the choice (batch filled in later)
    generator: torch.Tensor | None = None  # selection generator after the choice
    prepared: bool = False             # planned (chosen, memory in/out done)
    rows: dict | None = None           # the replay memory's rows of this batch

    def record(self) -> dict:
        """This planned step as ``state.pool_source.pending`` (copies)."""
        c = self.chosen
        choice = None if c is None else {
            "pool_size": c.pool_size, "pool_loss": float(c.pool_loss),
            "selected_loss": float(c.selected_loss), "generator": self.generator.clone()}
        rows = None if self.rows is None else {
            k: self.rows[k].clone() if isinstance(self.rows[k], torch.Tensor) else self.rows[k]
            for k in ROW_KEYS}
        return {"step": self.step, "indices": self.indices.clone(),
                "seeds": None if self.seeds is None else self.seeds.clone(),
                "choice": choice, "replay": rows}


def run_epoch(sl: Any, token: int) -> Iterator[Any]:
    """One epoch of ``sl`` on the two-resolution path."""
    src: TwoResolutionSource = sl._pool_source
    replay = sl._replay if isinstance(sl._replay, IndexReplay) else None
    cur = sl._cursor
    epoch = cur.epoch
    gen = cur.generator_on(src.handle.device)
    work = torch.Generator(device=gen.device)  # the choices run ahead of what is yielded
    resume, cur.resume = cur.resume, None
    loaded, src.loaded = src.loaded, None
    if resume is not None and resume["epoch"] == epoch:
        gen.set_state(resume["generator"])
        resumed, cur.epoch_start_step = resume["consumed"], resume["epoch_start_step"]
    else:
        gen.manual_seed(mix_seed(sl.config.seed, epoch, sl._rank))
        resumed, cur.epoch_start_step, loaded = 0, cur.step, None
    work.set_state(gen.get_state())
    sl._scoring.start_epoch(epoch, resumed=bool(resumed))
    cur.consumed, cur.active, cur.mid_epoch = resumed, True, True
    if resumed or cur.step > cur.epoch_start_step:
        logger.info("resumed epoch %d at step %d after %d batches (two_resolution: nothing "
                    "re-read)", epoch, cur.step, resumed)
    stream = src.indices(epoch)
    bs = src.batch_size
    # steps from the cursor on: a resumed epoch may resume between replay steps
    plan = ((s, f, t) for s, f, t in epoch_steps(sl._consumption, cur.epoch_start_step,
                                                  src.view.batches) if s >= cur.step)
    jobs: deque[_Job] = deque()
    done = False

    def fill() -> None:
        while len(jobs) <= src.lookahead:
            nxt = next(plan, None)
            if nxt is None:
                return
            step, first, take = nxt
            idx = stream[first * bs:(first + take) * bs]
            job = _Job(step, first, take, idx, take > 0 and phase_at(sl.phases, step).selects
                       and idx.numel() > bs)
            if loaded is not None and loaded["step"] == step:
                _restore(job, loaded, replay)  # planned before the state was taken
                if job.generator is not None:
                    work.set_state(job.generator)
            elif job.selects:
                src.submit_views(job, epoch)
            if job.prepared or (take > 0 and not job.selects and replay is None):
                job.full = src.submit("full", job.indices, epoch, step, job.seeds)
            jobs.append(job)

    def prepare(job: _Job) -> None:
        """Plan ``job`` (see the module docstring), once, one step before it is yielded."""
        if job.prepared:
            return
        job.prepared = True
        phase = phase_at(sl.phases, job.step)
        if job.take == 0:  # a replay step: its batch comes from the memory
            got = replay.plan_replay(bs, job.step) if replay is not None else None
            if got is None:
                raise RuntimeError(f"step {job.step} is a replay step but the replay memory "
                                   f"is empty")
            job.indices, job.seeds, job.rows = got
        elif job.selects:
            t0 = time.perf_counter()
            small = _views(sl, src, src.views(job))
            t1 = time.perf_counter()
            scores, losses, by = sl._scoring.score(small, sl._keys, job.step, src.handle)
            t2 = time.perf_counter()
            index = sl._chooser.choose(scores, bs, phase, work)
            sel = losses.index_select(0, index)
            n = job.indices.numel()
            job.indices = job.indices[index.cpu()]
            job.generator = work.get_state()
            job.chosen = Selected(None, n, bs, losses.mean(), sel.mean(),
                                  (t1 - t0, t2 - t1, time.perf_counter() - t2), by)
            _plan_fresh(job, sel, phase)
        else:
            if phase.selects:
                sl.distributed.skip()  # a short last pool, as SelectionStep does
            if replay is None:
                return  # queued in fill()
            _plan_fresh(job, None, phase)
        job.full = src.submit("full", job.indices, epoch, job.step, job.seeds)

    def _plan_fresh(job: _Job, losses: torch.Tensor | None, phase: Any) -> None:
        if replay is not None:
            seeds = torch.tensor(src.seeds("full", job.indices, epoch, job.step),
                                 dtype=torch.int64)
            job.indices, job.seeds, job.rows = replay.plan_fresh(
                job.indices, seeds, losses, phase.replay, job.step)

    try:
        fill()
        while jobs:
            if token != cur.token:
                raise RuntimeError("this SmartLoader iterator was superseded by a newer "
                                   "iter(); use one iterator at a time")
            job = jobs[0]
            prepare(job)
            if len(jobs) > 1:
                prepare(jobs[1])  # one step ahead: planned before this step trains
            t0 = time.perf_counter()
            batch = src.full(job.full)
            wait = time.perf_counter() - t0
            if sl._keys is None:
                sl._inspect_first(batch)
            elif src.shape_from_views:
                _full_shape(sl, src, batch)
            jobs.popleft()
            fill()  # the next step's loads start before this one trains
            cur.consumed = job.first + job.take
            if job.generator is not None:
                gen.set_state(job.generator)
            nxt = jobs[0] if jobs else None
            src.pending = nxt if nxt is not None and nxt.prepared and (
                nxt.chosen is not None or nxt.rows is not None) else None
            if job.take == 0:  # a replay step, in the phase of its step
                sl._schedules.begin_step(job.step)
                phase = phase_at(sl.phases, job.step)
                n = B.batch_size_of(B.get_field(batch, sl._keys[0]))
                chosen = Selected(batch, n, n, times=(wait, 0.0, 0.0))
            else:
                phase = enter_phase(sl)
                chosen = _selected(sl, job, batch, phase, wait)
            if replay is not None:
                replay.yielded(job.rows)
            out = emit(sl, chosen, phase)
            if chosen.scored_by is not None and host_reads_cheap(src.handle.device):
                report_fallbacks(sl)
            yield out
        report_fallbacks(sl)
        src.pending = None
        cur.epoch, cur.mid_epoch, cur.consumed = epoch + 1, False, 0
        done = True
    finally:
        if token == cur.token:
            cur.active = False
        if not done:  # a break, an exception or a dropped iterator: stop the workers
            src.close()


def _selected(sl: Any, job: _Job, batch: Any, phase: Any, wait: float) -> Selected:
    """What :func:`emit` reports of a fresh step's batch."""
    if phase.selects and job.take < sl.config.pool_factor:
        sl._cursor.short_pools += 1
    if job.chosen is None and not phase.selects:
        return Selected(batch, None, None)  # a uniform step: as the wrapped batch
    if job.chosen is None:  # a short last pool, yielded as it is
        n = B.batch_size_of(B.get_field(batch, sl._keys[0]))
        return Selected(batch, n, n, times=(wait, 0.0, 0.0))
    c = job.chosen
    return Selected(batch, c.pool_size, c.size, c.pool_loss, c.selected_loss,
                    (c.times[0] + wait, c.times[1], c.times[2]), c.scored_by)


def _restore(job: _Job, rec: Mapping[str, Any], replay: IndexReplay | None) -> None:
    """The plan a saved state made for ``job`` (before the state was taken)."""
    job.prepared = True
    job.indices = rec["indices"].clone()
    job.seeds = None if rec["seeds"] is None else rec["seeds"].clone()
    c = rec["choice"]
    if c is not None:
        job.generator = c["generator"].clone()
        job.chosen = Selected(None, c["pool_size"], job.indices.numel(),
                              torch.tensor(c["pool_loss"]), torch.tensor(c["selected_loss"]),
                              (0.0, 0.0, 0.0), "forward")
    if rec["replay"] is not None and replay is not None:
        job.rows = {k: v.clone() if isinstance(v, torch.Tensor) else v
                    for k, v in rec["replay"].items()}
        replay.restore_rows(job.rows)


def _views(sl: Any, src: TwoResolutionSource, small: Any) -> Any:
    """A collated pool of views ready to score: a ``uint8`` image scaled to ``[0, 1]``
    floats (as ``ToTensor`` does). The first pool also finds the fields and probes the
    model on two views, so a model that cannot take them fails at once."""
    cfg = sl.config
    keys = sl._keys or inspect_first(small, cfg, src.handle, False)[0]
    x = B.get_field(small, keys[0])
    if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
        small = B.replace_field(small, keys[0], x.float().div_(255))
    if sl._keys is None:
        sl._keys, _ = inspect_first(small, cfg, src.handle, True)
        sl._input_shape = None  # a view's: the first full batch sets it
        src.shape_from_views = True
    return small


def _full_shape(sl: Any, src: TwoResolutionSource, batch: Any) -> None:
    x = B.get_field(batch, sl._keys[0])
    sl._input_shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None
    src.shape_from_views = False

"""``pool_source: {type: two_resolution}``: score small views, load only the chosen samples.

A selection pool holds ``pool_factor`` batches of samples, so the plain path decodes and
augments ``pool_factor`` times the samples it trains on. On this path SmartLoader takes the
wrapped ``DataLoader``'s dataset, batch size, ``collate_fn`` and ``drop_last`` and draws the
indices itself:

1. the epoch's index stream: a permutation of ``range(len(dataset))`` from a generator seeded
   with (seed, epoch) (``shuffle=False``: in order), padded to a multiple of the world size
   and sharded by rank as a ``DistributedSampler`` does, so every rank yields the same number
   of batches;
2. for a selection step, each pool sample's low-resolution view
   ``dataset.low_res(index, size)`` is loaded in the worker processes
   (:class:`~smartloader.pipeline.workers.SampleWorkers`), collated with the loader's
   ``collate_fn`` and scored (the live model's forward on the views as loaded; a ``uint8``
   image is scaled to ``[0, 1]`` floats first); the phase's rule chooses the batch;
3. only the chosen samples are loaded at full resolution (``dataset[index]``, the dataset's
   own transforms) in the workers, and collated with ``collate_fn``.

Uniform steps load their batch's samples once, at full resolution, from the same stream.

Every load is split into one chunk per worker; the workers collate their chunks and write a
full batch's large fields into a shared-memory buffer
(:mod:`~smartloader.pipeline.batch_buffer`). With ``cache: true`` the loaded views are
kept (:class:`~smartloader.pipeline.view_cache.ViewCache`) and only views not cached yet are
loaded: from the second epoch on a selection step loads only its chosen samples.

Pipelining: the views of the next ``lookahead`` steps load while the current step trains, and
the pool of step ``t + 1`` is scored and its chosen samples queued *before* step ``t`` is
yielded. Its scores are therefore one step stale: they come from the model before step ``t``
trained. While the workers keep up, the loop never waits for a load.

Resume: the index stream is a function of (seed, epoch, rank), so a state holds the position
(wrapped batches consumed) and, because step ``t + 1`` was already chosen when step ``t`` was
yielded, that choice (its indices and numbers) and the generator after it. A resumed run loads
the same samples as the uninterrupted one; nothing consumed is read again.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch

from smartloader.common import batch as B
from smartloader.common.epochs import mix_seed
from smartloader.common.state import StateError, check_int, show, strict_keys
from smartloader.config.phases import phase_at
from smartloader.config.steps import epoch_steps
from smartloader.pipeline.distributed import world
from smartloader.pipeline.probe import inspect_first
from smartloader.pipeline.step import Selected, host_reads_cheap
from smartloader.pipeline.view_cache import ViewCache
from smartloader.pipeline.batch_buffer import assemble, buffer_for, layout_of
from smartloader.pipeline.workers import SampleWorkers
from smartloader.scoring.model import ModelHandle

__all__ = ["TwoResolutionSource", "build_pool_source", "run_epoch", "EpochView", "epoch_view"]

logger = logging.getLogger("smartloader")

_ORDER, _FULL, _LOW = 0x6F72646572, 0x66756C6C, 0x6C6F77
#: the keys of ``state["pool_source"]``; ``pending``: the step chosen ahead, or None
STATE_KEYS = ("pending",)
PENDING_KEYS = ("step", "indices", "pool_size", "pool_loss", "selected_loss", "generator")


def build_pool_source(cfg: Any, loader: Any, handle: ModelHandle) -> "TwoResolutionSource | None":
    """The config's pool source for ``loader``: None for the wrapped loader's batches."""
    spec = cfg.pool_source
    if spec is None or spec["type"] == "loader":
        return None
    return TwoResolutionSource(spec, loader, cfg.seed, handle, cfg.autocast)


def epoch_view(cfg: Any, loader: Any) -> Any:
    """What SmartLoader counts an epoch's batches of: ``loader``, or with pool_source
    two_resolution the :class:`EpochView` of this rank's index stream (checking that
    ``loader`` is a DataLoader this path supports)."""
    spec = cfg.pool_source
    if spec is None or spec["type"] == "loader":
        return loader
    return _view(loader)


def _view(loader: Any) -> "EpochView":
    ds, _ = _check_loader(loader)
    per = -(-len(ds) // world()[1])
    bs = loader.batch_size
    return EpochView(per // bs if loader.drop_last else -(-per // bs), bs,
                     bool(loader.drop_last), range(per))


@dataclass(frozen=True)
class EpochView:
    """What ``len()``, ``total_epochs`` and the shape plan read of the wrapped loader, for
    the stream this rank draws (``sampler``: its samples)."""

    batches: int
    batch_size: int
    drop_last: bool
    sampler: range

    def __len__(self) -> int:
        return self.batches


class TwoResolutionSource:
    """The two-resolution pool source over a ``DataLoader``'s map-style dataset.

    Args:
        spec: the parsed ``pool_source`` section (``size``, ``workers``, ``lookahead``,
            ``timeout_s``, ``cache``, ``cache_max_gb``).
        loader: the wrapped ``torch.utils.data.DataLoader``.
        seed: the config's seed (the index stream's and the workers' seeds derive from it).
        handle: the loader's model handle; its model and loss score the views.
        autocast: the config's ``autocast`` (dtype name or None) for the scoring forward.
    """

    def __init__(self, spec: Mapping[str, Any], loader: Any, seed: int,
                 handle: ModelHandle, autocast: str | None = None) -> None:
        self.dataset, self.shuffle = _check_loader(loader)
        self.batch_size: int = loader.batch_size
        self.collate = loader.collate_fn
        self.drop_last = bool(loader.drop_last)
        self.size, self.workers = spec["size"], spec["workers"]
        self.lookahead, self.timeout_s = spec["lookahead"], spec["timeout_s"]
        self.seed = seed
        self.rank, self.world = world()
        # the views are scored as loaded: they are already at the scoring size
        self.handle = ModelHandle(handle.model, handle.loss_fn, None, autocast)
        #: the loader's input shape came from a view (set from the first full batch)
        self.shape_from_views = False
        self._pool: SampleWorkers | None = None
        #: the step chosen ahead of the last yielded one (its state entry), or None
        self.pending: dict | None = None
        #: a loaded ``pending``, used when the next iterator resumes the epoch
        self.loaded: dict | None = None
        self.view = _view(loader)
        self.per_rank = len(self.view.sampler)
        #: the loaded views (``cache: true``), kept across epochs; not part of the state
        self.cache = ViewCache(len(self.dataset), spec["cache_max_gb"]) if spec["cache"] \
            else None
        #: the last full batch's per-sample tensor fields (shape, dtype), or None
        self._layout: Any = None

    # -- the index stream -----------------------------------------------------------------
    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's dataset indices for ``epoch``, in the order they are drawn."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, _ORDER, epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        total = self.per_rank * self.world
        if total > n:  # pad with the stream's start, as DistributedSampler does
            order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[:total - n]])
        return order[self.rank:total:self.world]

    # -- the workers ----------------------------------------------------------------------
    @property
    def pool(self) -> SampleWorkers:
        if self._pool is None or self._pool.closed:
            self._pool = SampleWorkers(self.dataset, self.workers, self.size, self.timeout_s,
                                       self.collate)
        return self._pool

    @property
    def worker_pids(self) -> list[int]:
        """The running worker processes' ids (empty before the first ``iter()``)."""
        return [] if self._pool is None or self._pool.closed else self._pool.pids

    def close(self) -> None:
        """Stop the worker processes; the next ``iter()`` starts new ones."""
        if self._pool is not None:
            self._pool.close()

    def submit(self, kind: str, indices: torch.Tensor, epoch: int,
               step: int) -> list[tuple[int, int]]:
        """Queue ``indices`` in about equal chunks, one per worker, so every worker loads
        (and collates) a part of the batch; the tickets and their sizes, in order."""
        ids = indices.tolist()
        tag = _LOW if kind == "low" else _FULL
        seeds = [mix_seed(self.seed, tag, epoch, self.rank, step, j, i)
                 for j, i in enumerate(ids)]
        per = -(-len(ids) // self.workers)
        pool = self.pool
        out = buffer_for(self._layout, len(ids)) if kind == "full" and len(ids) > per \
            else None
        return [(pool.submit(kind, ids[a:a + per], seeds[a:a + per], out, a),
                 len(ids[a:a + per]), a, out) for a in range(0, len(ids), per)]

    def submit_views(self, job: "_Job", epoch: int) -> None:
        """Queue the views of ``job``'s pool (with the cache: those not cached yet)."""
        job.need = job.indices if self.cache is None else self.cache.missing(job.indices)
        job.low = self.submit("low", job.need, epoch, job.step) if job.need.numel() else []

    def views(self, job: "_Job") -> Any:
        """The collated views of ``job``'s pool, in its order."""
        if self.cache is None:
            return self.collect(job.low)
        if job.low:
            self.cache.store(job.need, self.collect(job.low))
        return self.cache.take(job.indices)

    def collect(self, tickets: list[tuple[int, int, int, Any]]) -> Any:
        """The batch of the samples of ``tickets``: their collated chunks in order (fields
        the workers wrote into the shared buffer are taken from it, whole)."""
        parts = [self.pool.result(t[0]) for t in tickets]
        return assemble(tickets[0][3], parts, [(a, n) for _, n, a, _ in tickets])

    def full(self, tickets: list[tuple[int, int, int, Any]]) -> Any:
        """The full-resolution batch of ``tickets`` (its layout shapes the next buffers)."""
        batch = self.collect(tickets)
        self._layout = layout_of(batch, sum(t[1] for t in tickets))
        return batch

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"pending": self.loaded if self.loaded is not None else self.pending}

    def check_state(self, state: Any, path: str = "state.pool_source") -> None:
        strict_keys(self, state, STATE_KEYS, path)
        p = state["pending"]
        if p is None:
            return
        strict_keys(self, p, PENDING_KEYS, f"{path}.pending")
        check_int(p["step"], f"{path}.pending.step")
        check_int(p["pool_size"], f"{path}.pending.pool_size", minimum=1)
        idx = p["indices"]
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or idx.dim() != 1:
            raise StateError(f"{path}.pending.indices: must be a 1-d int64 tensor, got "
                             f"{show(idx)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self.dataset)):
            raise StateError(f"{path}.pending.indices: must be dataset indices in "
                             f"[0, {len(self.dataset)}), got {int(idx.min())}..{int(idx.max())}")
        for k in ("pool_loss", "selected_loss"):
            if not isinstance(p[k], float):
                raise StateError(f"{path}.pending.{k}: must be a float, got {show(p[k])}")
        if not isinstance(p["generator"], torch.Tensor) or p["generator"].dtype != torch.uint8:
            raise StateError(f"{path}.pending.generator: must be a generator state (uint8 "
                             f"tensor), got {show(p['generator'])}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.loaded = state["pending"]
        self.pending = None


def _check_loader(loader: Any) -> tuple[Any, bool]:
    """The dataset and whether to shuffle; a clear error for what this path refuses."""
    from torch.utils.data import (BatchSampler, DataLoader, IterableDataset, RandomSampler,
                                  SequentialSampler)
    where = "pool_source: two_resolution"
    if not isinstance(loader, DataLoader):
        raise TypeError(f"{where} needs a torch.utils.data.DataLoader over a map-style "
                        f"dataset (it reads the dataset, batch_size and collate_fn), got "
                        f"{type(loader).__name__}; remove the pool_source key for other "
                        f"loaders")
    ds = loader.dataset
    if isinstance(ds, IterableDataset):
        raise TypeError(f"{where}: {type(ds).__name__} is an IterableDataset; this path draws "
                        f"samples by index, so it needs a map-style dataset (__getitem__, "
                        f"__len__, low_res); remove the pool_source key")
    if not callable(getattr(ds, "low_res", None)):
        raise TypeError(f"{where}: the dataset {type(ds).__name__} has no low_res(index, "
                        f"size) method; it must return sample index's low-resolution view "
                        f"(the same structure as dataset[index], the image at about size "
                        f"px, e.g. decoded with PIL's Image.draft), or remove the "
                        f"pool_source key (docs/two_resolution.md)")
    if not isinstance(loader.batch_size, int):
        raise ValueError(f"{where}: the DataLoader has a custom batch_sampler (batch_size "
                         f"None); pass batch_size=B and shuffle= instead: SmartLoader draws "
                         f"the indices and batches them itself")
    if type(loader.batch_sampler) is not BatchSampler:
        raise ValueError(f"{where}: the DataLoader has a custom batch_sampler "
                         f"({type(loader.batch_sampler).__name__}); SmartLoader draws the "
                         f"indices itself: pass batch_size=B and shuffle= instead")
    s = loader.sampler
    if type(s) is RandomSampler:
        if s.replacement or s._num_samples is not None or s.generator is not None:
            raise ValueError(f"{where}: the DataLoader's RandomSampler has replacement, "
                             f"num_samples or a generator; SmartLoader draws a permutation "
                             f"per epoch from its seed: use shuffle=True alone")
        return ds, True
    if type(s) is SequentialSampler:
        return ds, False
    raise ValueError(f"{where}: the DataLoader has a sampler set explicitly "
                     f"({type(s).__name__}); SmartLoader draws the indices itself (and "
                     f"shards them by rank under torch.distributed, as DistributedSampler "
                     f"does): pass the plain dataset with shuffle=True or False")


@dataclass
class _Job:
    """One planned step: its indices, and where its samples are in loading."""

    step: int
    first: int          # first wrapped batch of the epoch it consumes
    take: int           # wrapped batches it consumes
    indices: torch.Tensor
    selects: bool
    low: list[tuple] | None = None   # (ticket, samples, offset, buffer) of each chunk
    need: torch.Tensor | None = None           # the indices whose views ``low`` loads
    full: list[tuple] | None = None
    chosen: Selected | None = None     # numbers of the choice (batch filled in later)
    generator: torch.Tensor | None = None  # selection generator after the choice
    prepared: bool = False  # chosen, or (a short pool) the ranks' skip() done
    record: dict | None = field(default=None, repr=False)


def run_epoch(sl: Any, token: int) -> Iterator[Any]:
    """One epoch of ``sl`` on the two-resolution path (the counterpart of
    :func:`smartloader.pipeline.epoch.run_epoch`)."""
    from smartloader.pipeline.epoch import _enter_phase, emit, report_fallbacks
    src: TwoResolutionSource = sl._pool_source
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
    if resumed:
        logger.info("resumed epoch %d after %d batches (two_resolution: nothing re-read)",
                    epoch, resumed)
    stream = src.indices(epoch)
    bs = src.batch_size
    plan = ((s, f, t) for s, f, t in epoch_steps(sl._consumption, cur.epoch_start_step,
                                                  src.view.batches) if f >= resumed)
    jobs: deque[_Job] = deque()
    done = False

    def fill() -> None:
        while len(jobs) <= src.lookahead:
            nxt = next(plan, None)
            if nxt is None:
                return
            step, first, take = nxt
            idx = stream[first * bs:(first + take) * bs]
            job = _Job(step, first, take, idx, phase_at(sl.phases, step).selects
                       and idx.numel() > bs)
            if job.selects and loaded is not None and loaded["step"] == step:
                _restore(job, loaded)  # chosen before the state was taken
                work.set_state(job.generator)
            elif job.selects:
                src.submit_views(job, epoch)
            if not job.selects or job.chosen is not None:
                job.full = src.submit("full", job.indices, epoch, step)
            jobs.append(job)

    def prepare(job: _Job) -> None:
        """Once per selection step: score the job's views, choose its batch, queue the
        chosen samples; a short last pool (nothing to choose) only meets the other ranks."""
        if job.prepared:
            return
        job.prepared = True
        phase = phase_at(sl.phases, job.step)
        if not phase.selects:
            return
        if not job.selects or job.chosen is not None:
            if not job.selects:
                sl.distributed.skip()  # as SelectionStep does for a short pool
            return
        t0 = time.perf_counter()
        small = _views(sl, src, src.views(job))
        t1 = time.perf_counter()
        keys, k = sl._keys, bs
        scores, losses, by = sl._scoring.score(small, keys, job.step, src.handle)
        t2 = time.perf_counter()
        index = sl._chooser.choose(scores, k, phase, work)
        sel = losses.index_select(0, index)
        n = job.indices.numel()
        job.indices = job.indices[index.cpu()]
        job.generator = work.get_state()
        job.chosen = Selected(None, n, k, losses.mean(), sel.mean(),
                              (t1 - t0, t2 - t1, time.perf_counter() - t2), by)
        job.full = src.submit("full", job.indices, epoch, job.step)

    try:
        fill()
        while jobs:
            if token != cur.token:
                raise RuntimeError("this SmartLoader iterator was superseded by a newer "
                                   "iter(); use one iterator at a time")
            job = jobs[0]
            prepare(job)
            if len(jobs) > 1:
                prepare(jobs[1])  # one step ahead: scored before this step trains
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
            nxt = jobs[0] if jobs and jobs[0].chosen is not None else None
            src.pending = None if nxt is None else _record(nxt)
            phase = _enter_phase(sl)
            if phase.selects and job.take < sl.config.pool_factor:
                cur.short_pools += 1
            if job.chosen is None and not phase.selects:
                chosen = Selected(batch, None, None)  # a uniform step: as the wrapped batch
            elif job.chosen is None:  # a short last pool, yielded as it is
                n = B.batch_size_of(B.get_field(batch, sl._keys[0]))
                chosen = Selected(batch, n, n, times=(wait, 0.0, 0.0))
            else:
                c = job.chosen
                chosen = Selected(batch, c.pool_size, c.size, c.pool_loss, c.selected_loss,
                                  (c.times[0] + wait, c.times[1], c.times[2]), c.scored_by)
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


def _restore(job: _Job, rec: Mapping[str, Any]) -> None:
    """The choice a saved state made for ``job`` (scored before the state was taken)."""
    job.indices = rec["indices"].clone()
    job.generator = rec["generator"].clone()
    job.chosen = Selected(None, rec["pool_size"], job.indices.numel(),
                          torch.tensor(rec["pool_loss"]), torch.tensor(rec["selected_loss"]),
                          (0.0, 0.0, 0.0), "forward")


def _record(job: _Job) -> dict:
    if job.record is None:
        c = job.chosen
        job.record = {"step": job.step, "indices": job.indices.clone(),
                      "pool_size": c.pool_size, "pool_loss": float(c.pool_loss),
                      "selected_loss": float(c.selected_loss),
                      "generator": job.generator.clone()}
    return job.record


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

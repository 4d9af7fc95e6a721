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

The epoch loop (:mod:`smartloader.pipeline.two_resolution_epoch`) pipelines the loads: the
views of the next ``lookahead`` steps load while the current step trains, and step ``t + 1``
is planned (scored, chosen, its replay rows drawn) and its samples queued *before* step ``t``
is yielded, so its scores are one step stale. With ``replay:`` the memory stores indices and
load seeds (:mod:`smartloader.replay.by_index`).

Resume: the index stream is a function of (seed, epoch, rank), so a state holds the position
(wrapped batches consumed) and, because step ``t + 1`` was already planned when step ``t``
was yielded, that plan (``pending``: its indices, seeds, choice and replay rows). A resumed
run loads the same samples as the uninterrupted one; nothing consumed is read again.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from smartloader.common import batch as B
from smartloader.common.epochs import mix_seed
from smartloader.common.state import StateError, check_int, show, strict_keys
from smartloader.pipeline.distributed import world
from smartloader.config.pool_source import resolve_workers
from smartloader.pipeline.view_cache import ViewCache, not_deterministic, same_views
from smartloader.pipeline.batch_buffer import assemble, buffer_for, layout_of
from smartloader.pipeline.workers import SampleWorkers
from smartloader.replay.by_index import IndexReplay, check_rows
from smartloader.scoring.model import ModelHandle

__all__ = ["TwoResolutionSource", "build_pool_source", "EpochView", "epoch_view"]

logger = logging.getLogger("smartloader")

_ORDER, _FULL, _LOW = 0x6F72646572, 0x66756C6C, 0x6C6F77
#: the keys of ``state["pool_source"]``; ``pending``: the step planned ahead, or None
STATE_KEYS = ("pending",)
#: ``seeds``: the samples' load seeds (None: the per-position ones); ``choice``: the numbers
#: of a selection (None for a uniform or replay step); ``replay``: the rows of the replay
#: memory (None without ``replay:``)
PENDING_KEYS = ("step", "indices", "seeds", "choice", "replay")
CHOICE_KEYS = ("pool_size", "pool_loss", "selected_loss", "generator")


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
        # what the DataLoader's own workers would have been given
        self.worker_init_fn = loader.worker_init_fn
        self.context = loader.multiprocessing_context
        #: pin the batches (the DataLoader's pin_memory; only with an accelerator)
        self.pin = bool(loader.pin_memory) and torch.cuda.is_available()
        self.size = spec["size"]
        self.workers = resolve_workers(spec["workers"], loader)
        self.lookahead, self.timeout_s = spec["lookahead"], spec["timeout_s"]
        self.seed = seed
        self.rank, self.world = world()
        # the views are scored as loaded: they are already at the scoring size
        self.handle = ModelHandle(handle.model, handle.loss_fn, None, autocast)
        #: the loader's input shape came from a view (set from the first full batch)
        self.shape_from_views = False
        self._pool: SampleWorkers | None = None
        #: the step planned ahead of the last yielded one (its ``record()`` is the state
        #: entry), or None
        self.pending: Any = None
        #: a loaded ``pending``, used when the next iterator resumes the epoch
        self.loaded: dict | None = None
        self.view = _view(loader)
        self.per_rank = len(self.view.sampler)
        #: the loaded views (``cache: true``), kept across epochs; not part of the state
        if not spec["cache"]:
            self.cache = None
        elif spec["cache_dir"] is None:
            self.cache = ViewCache(len(self.dataset), spec["cache_max_gb"])
        else:
            self.cache = ViewCache.on_disk(spec["cache_dir"], self.dataset, self.size)
        #: whether low_res was seen to give the same view twice (cache: true)
        self._checked = False
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
                                       self.collate, self.worker_init_fn, self.context)
        return self._pool

    @property
    def worker_pids(self) -> list[int]:
        """The running worker processes' ids (empty before the first ``iter()``)."""
        return [] if self._pool is None or self._pool.closed else self._pool.pids

    def close(self) -> None:
        """Stop the worker processes; the next ``iter()`` starts new ones."""
        if self._pool is not None:
            self._pool.close()

    def seeds(self, kind: str, indices: torch.Tensor, epoch: int, step: int) -> list[int]:
        """The load seed of each sample of a batch: of (seed, kind, epoch, rank, step,
        position, index), so a sample's random transforms do not depend on the worker."""
        tag = _LOW if kind == "low" else _FULL
        return [mix_seed(self.seed, tag, epoch, self.rank, step, j, i)
                for j, i in enumerate(indices.tolist())]

    def submit(self, kind: str, indices: torch.Tensor, epoch: int, step: int,
               seeds: torch.Tensor | None = None) -> list[tuple[int, int, int, Any]]:
        """Queue ``indices`` (loaded with ``seeds``, default :meth:`seeds`) in about equal
        chunks, one per worker, so every worker loads (and collates) a part of the batch;
        the tickets, their sizes and offsets, and the shared buffer, in order."""
        ids = indices.tolist()
        seeds = self.seeds(kind, indices, epoch, step) if seeds is None else seeds.tolist()
        per = -(-len(ids) // self.workers)
        pool = self.pool
        out = buffer_for(self._layout, len(ids)) if kind == "full" and len(ids) > per \
            else None
        return [(pool.submit(kind, ids[a:a + per], seeds[a:a + per], out, a),
                 len(ids[a:a + per]), a, out) for a in range(0, len(ids), per)]

    def replay_stage(self, cfg: Any, total_steps: int | None, seed: int) -> IndexReplay:
        """The ``replay:`` memory of this path: dataset indices and load seeds."""
        return IndexReplay(cfg, len(self.dataset), total_steps, seed)

    def submit_views(self, job: Any, epoch: int) -> None:
        """Queue the views of ``job``'s pool (with the cache: those not cached yet)."""
        job.need = job.indices if self.cache is None else self.cache.missing(job.indices)
        job.low = self.submit("low", job.need, epoch, job.step) if job.need.numel() else []

    def views(self, job: Any) -> Any:
        """The collated views of ``job``'s pool, in its order."""
        if self.cache is None:
            return self.collect(job.low)
        if job.low:
            views = self.collect(job.low)
            if not self._checked:  # once: the first view again, seeded differently
                self._checked = True
                again = self.collect(self.submit("low", job.need[:1], 0, 0,
                                                 torch.tensor([0x5EED])))
                if not same_views(B.take(views, torch.arange(1), job.need.numel()), again):
                    raise not_deterministic(int(job.need[0]), self.size)
            self.cache.store(job.need, views)
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
        return B.pin(batch) if self.pin else batch

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.loaded is not None:
            return {"pending": self.loaded}
        # the record is made only when a state is asked for, not at every step
        return {"pending": None if self.pending is None else self.pending.record()}

    def check_state(self, state: Any, path: str = "state.pool_source") -> None:
        strict_keys(self, state, STATE_KEYS, path)
        p = state["pending"]
        if p is None:
            return
        where = f"{path}.pending"
        strict_keys(self, p, PENDING_KEYS, where)
        check_int(p["step"], f"{where}.step")
        idx = p["indices"]
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or idx.dim() != 1:
            raise StateError(f"{where}.indices: must be a 1-d int64 tensor, got {show(idx)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self.dataset)):
            raise StateError(f"{where}.indices: must be dataset indices in "
                             f"[0, {len(self.dataset)}), got {int(idx.min())}..{int(idx.max())}")
        seeds = p["seeds"]
        if seeds is not None and not (isinstance(seeds, torch.Tensor) and seeds.dtype ==
                                      torch.int64 and tuple(seeds.shape) == tuple(idx.shape)):
            raise StateError(f"{where}.seeds: must be None or an int64 tensor of one seed per "
                             f"index ({idx.numel()}), got {show(seeds)}")
        c = p["choice"]
        if c is not None:
            strict_keys(self, c, CHOICE_KEYS, f"{where}.choice")
            check_int(c["pool_size"], f"{where}.choice.pool_size", minimum=1)
            for k in ("pool_loss", "selected_loss"):
                if not isinstance(c[k], float):
                    raise StateError(f"{where}.choice.{k}: must be a float, got {show(c[k])}")
            g = c["generator"]
            if not isinstance(g, torch.Tensor) or g.dtype != torch.uint8:
                raise StateError(f"{where}.choice.generator: must be a generator state "
                                 f"(uint8 tensor), got {show(g)}")
        if p["replay"] is not None:
            check_rows(p["replay"], f"{where}.replay", idx.numel())

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

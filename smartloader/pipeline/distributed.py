"""Multi-process (torch.distributed) support: equal step counts and global selection.

Two things go wrong when every rank wraps its own shard naively:

- **Unequal step counts.** If one rank's shard yields more batches, it runs more training
  steps, and its extra DDP all-reduce (or global-selection gather) waits forever for peers
  that have finished. :meth:`DistributedSync.epoch_limit` all-reduces (MIN) the wrapped
  loaders' ``len()`` at the start of every epoch, and SmartLoader stops reading there.
- **Local percentiles.** With ``selection_scope: local`` (the default) each rank ranks its
  own pool. With ``selection_scope: global`` the ranks all-gather their pool losses, and each
  sample is weighted by its percentile among *all* ranks' pools
  (:func:`global_percentiles`); each rank still draws its own batch from its own pool.

The same collective at the start of the first epoch refuses (on every rank) a DataLoader
that is not its rank's shard under accelerate, and warns under torchrun
(:mod:`smartloader.pipeline.sharding`).

Nothing here runs a collective unless ``torch.distributed`` is initialised with more than one
rank. See ``docs/distributed.md``.
"""
from __future__ import annotations

import logging
import time
import warnings
import sys
from typing import Any, Iterator, Sequence

import torch

from smartloader.pipeline.sharding import ERROR, sharding_problem

__all__ = ["DistributedSync", "global_percentiles", "gather_losses", "world"]

logger = logging.getLogger("smartloader")

SCOPES = ("local", "global")
_END = object()


def _check_accumulation_ends(limit: int, longest: int) -> None:
    """Refuse shards of unequal length under accelerate's gradient accumulation.

    ``accelerator.accumulate`` syncs the gradients of the step on which the prepared loader
    reports the end of its epoch. A rank whose shard is longer than the agreed length stops
    before its end and never reports it, so its ranks would sync on different steps."""
    state = sys.modules.get("accelerate.state")
    if state is None or not state.is_initialized():
        return
    grad = state.GradientState()
    if grad.num_steps > 1 and grad.sync_with_dataloader:
        raise ValueError(
            f"smartloader: the prepared loaders' shards differ in length ({limit} to "
            f"{longest} batches), so with gradient_accumulation_steps={grad.num_steps} the "
            "processes would sync gradients on different steps at the end of each epoch. "
            "Keep accelerate's even_batches=True (the default) or use drop_last=True")


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def global_percentiles(local_losses: torch.Tensor, gathered_losses_list: Sequence[torch.Tensor],
                       rank: int | None = None) -> torch.Tensor:
    """Percentile ``(global rank + 1) / global_n`` of each local sample among all pools.

    Args:
        local_losses: this rank's pool losses, 1-D, ``n`` values.
        gathered_losses_list: every rank's pool losses in rank order (this rank's included);
            pools may differ in size.
        rank: which entry of ``gathered_losses_list`` is ``local_losses``; ``None`` = the
            first entry equal to it.

    Returns:
        float32 tensor of ``n`` values in ``(0, 1]`` on ``local_losses.device``. Ties are
        broken by (rank, position), exactly as a stable sort of the concatenated pools, so the
        result equals ``ranked_log_weights``'s percentiles over ``torch.cat(gathered)``
        restricted to this rank's slice.
    """
    sizes = [int(t.shape[0]) for t in gathered_losses_list]
    if rank is None:
        rank = next((i for i, t in enumerate(gathered_losses_list)
                     if t.shape == local_losses.shape
                     and torch.equal(t.to(local_losses.device), local_losses)), None)
        if rank is None:
            raise ValueError("local_losses is not one of gathered_losses_list; pass rank=")
    if sizes[rank] != local_losses.shape[0]:
        raise ValueError(f"gathered_losses_list[{rank}] has {sizes[rank]} losses, "
                         f"local_losses {local_losses.shape[0]}")
    device = local_losses.device
    cat = torch.cat([t.to(device, torch.float32) for t in gathered_losses_list])
    cat[sum(sizes[:rank]):sum(sizes[:rank + 1])] = local_losses.float()
    n = cat.shape[0]
    order = torch.argsort(cat, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(n, device=device)
    start = sum(sizes[:rank])
    mine = ranks[start:start + sizes[rank]]
    return (mine.to(torch.float32) + 1.0) / n


def _comm_device(t: torch.Tensor) -> torch.device:
    # gloo reduces CPU tensors; NCCL needs them on the GPU.
    backend = torch.distributed.get_backend()
    return torch.device("cpu") if backend == "gloo" else t.device


def gather_losses(losses: torch.Tensor | None) -> tuple[list[torch.Tensor], int]:
    """All-gather every rank's 1-D pool losses (``None`` = this rank has no pool this step).

    Two collectives: the sizes (one int64 each), then the losses padded with +inf to the
    largest pool. Returns the per-rank list (unpadded, on the losses' device) and the bytes
    this rank received.
    """
    dist = torch.distributed
    _, size = world()
    probe = losses if losses is not None else torch.empty(0)
    device = _comm_device(probe) if losses is not None else _default_comm_device()
    n = torch.tensor([0 if losses is None else losses.shape[0]], dtype=torch.int64,
                     device=device)
    counts = [torch.empty_like(n) for _ in range(size)]
    dist.all_gather(counts, n)
    counts_l = [int(c.item()) for c in counts]
    width = max(counts_l)
    padded = torch.full((width,), float("inf"), dtype=torch.float32, device=device)
    if losses is not None:
        padded[:losses.shape[0]] = losses.detach().to(device, torch.float32)
    out = [torch.empty_like(padded) for _ in range(size)]
    if width:
        dist.all_gather(out, padded)
    back = probe.device if losses is not None else torch.device("cpu")
    nbytes = size * 8 + size * width * 4
    return [o[:c].to(back) for o, c in zip(out, counts_l)], nbytes


def _default_comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class DistributedSync:
    """The collectives SmartLoader runs when torch.distributed has more than one rank.

    Attributes (read them from ``loader.distributed``):
        scope: ``"local"`` or ``"global"`` (the config's ``selection_scope``).
        batch_limit: wrapped batches every rank reads this epoch (``None`` = not distributed).
        comm_time_s / comm_bytes: host wall-clock seconds and bytes received by the last
            global-selection gather (0 for local selection).
        total_comm_time_s / total_comm_bytes: the same, summed over the run (this process).
    """

    def __init__(self, scope: str = "local"):
        if scope not in SCOPES:
            raise ValueError(f"selection_scope must be one of {SCOPES}, got {scope!r}")
        self.scope = scope
        self.batch_limit: int | None = None
        self._own_len: int | None = None
        self._sharding_checked = False
        self.comm_time_s = 0.0
        self.comm_bytes = 0
        self.total_comm_time_s = 0.0
        self.total_comm_bytes = 0

    @property
    def active(self) -> bool:
        return world()[1] > 1

    @property
    def is_global(self) -> bool:
        return self.scope == "global" and self.active

    def epoch_limit(self, loader: Any, epoch: int) -> int | None:
        """All ranks agree on how many wrapped batches to read this epoch: the smallest
        ``len(loader)``. Raises on every rank if any rank's loader has no ``len()``, or (at
        the first epoch) is a DataLoader that is not its rank's shard
        (:mod:`~smartloader.pipeline.sharding`). ``None`` when not distributed (read to the
        end)."""
        if not self.active:
            self.batch_limit = None
            return None
        rank, size = world()
        try:
            n = len(loader)
        except TypeError:
            n = -1
        missing = n < 0
        problem = None if self._sharding_checked else sharding_problem(loader, size)
        self._sharding_checked = True
        bad = problem is not None and problem[0] == ERROR
        if problem is not None and not bad:
            logger.warning("%s (rank %d)", problem[1], rank)
            warnings.warn(problem[1], UserWarning, stacklevel=4)
        # One collective: MIN of (length, -length, -missing, -bad) finds the shortest and
        # the longest shard, whether any rank lacks a length and whether any is unsharded.
        t = torch.tensor([2 ** 62 if missing else n, 0 if missing else -n, -int(missing),
                          -int(bad)], dtype=torch.int64, device=_default_comm_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        limit, longest = int(t[0]), -int(t[1])
        if bool(t[3] < 0):
            raise ValueError(problem[1] if bad else
                             "smartloader: another rank's wrapped DataLoader is not sharded "
                             "across the ranks (see that rank's error)")
        if bool(t[2] < 0):
            raise TypeError(
                "smartloader: under torch.distributed every rank must read the same number of "
                "batches per epoch, so the wrapped loader needs a len() on every rank; "
                f"{'this rank' if missing else 'another rank'}'s loader "
                f"({type(loader).__name__}) has none. Use a DataLoader with a "
                "DistributedSampler, or give the loader a __len__")
        if longest > limit:
            _check_accumulation_ends(limit, longest)
        if n > limit:
            logger.info("epoch %d: rank %d stops after %d of its %d wrapped batches so all "
                        "ranks take the same number of steps (%d left unread)", epoch,
                        rank, limit, n, n - limit)
        self.batch_limit = limit
        self._own_len = n
        return limit

    def take(self, it: Iterator, remaining: int) -> Iterator:
        """At most ``remaining`` more batches of ``it``, the rest of this epoch's agreed
        :meth:`epoch_limit`. If this rank's loader holds no more than that, ``it`` is then
        read to its end, so the wrapped loader runs its own end-of-epoch code (accelerate's
        ``DataLoaderShard`` otherwise stays registered as the dataloader in progress)."""
        for _ in range(remaining):
            batch = next(it, _END)
            if batch is _END:
                return
            yield batch
        if self._own_len == self.batch_limit and next(it, _END) is not _END:
            logger.warning("the wrapped loader yielded more batches than its len() (%d); the "
                           "rest of this epoch is left unread so all ranks take the same "
                           "number of steps", self._own_len)

    def log_weights(self, losses: torch.Tensor, beta: float) -> torch.Tensor:
        """``beta * log(global percentile)`` of this rank's pool (runs two collectives)."""
        t0 = time.perf_counter()
        gathered, nbytes = gather_losses(losses)
        self._account(time.perf_counter() - t0, nbytes)
        return beta * torch.log(global_percentiles(losses, gathered, rank=world()[0]))

    def ranked_log_weights(self, losses: torch.Tensor, beta: float) -> torch.Tensor:
        """The ranked rule's log-weights for ``selection_scope: global``: among all ranks'
        pools while more than one rank runs, within this pool otherwise."""
        if self.is_global:
            return self.log_weights(losses, beta)
        from smartloader.selection.ranked import ranked_log_weights
        return ranked_log_weights(losses, beta)

    def skip(self) -> None:
        """Take part in a global-selection step without a pool to choose from (a lone last
        batch is passed through), so the ranks that do select are not left waiting."""
        if self.is_global:
            t0 = time.perf_counter()
            _, nbytes = gather_losses(None)
            self._account(time.perf_counter() - t0, nbytes)

    def _account(self, seconds: float, nbytes: int) -> None:
        self.comm_time_s, self.comm_bytes = seconds, nbytes
        self.total_comm_time_s += seconds
        self.total_comm_bytes += nbytes

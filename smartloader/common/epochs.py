"""Per-epoch plumbing shared by the wrappers: seeds from (seed, epoch, rank), set_epoch."""
from __future__ import annotations

from typing import Any

__all__ = ["mix_seed", "forward_set_epoch", "check_epoch"]

_MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from e.g. (seed, epoch, rank) with splitmix64, so nearby inputs
    decorrelate (seed 0 epoch 1 and seed 1 epoch 0 give unrelated streams)."""
    h = 0x9E3779B97F4A7C15
    for x in values:
        h = (h ^ (x & _MASK64)) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def forward_set_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the wrapped loader, else on its sampler or batch sampler's
    sampler (a ``DistributedSampler`` reshuffles only when told the epoch)."""
    for obj in (loader, getattr(loader, "sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if obj is not None and callable(getattr(obj, "set_epoch", None)):
            obj.set_epoch(epoch)
            return


def check_epoch(epoch: Any) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    return epoch

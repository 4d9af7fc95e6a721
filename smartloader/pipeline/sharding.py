"""Is the wrapped loader this rank's shard of the data? Catch loaders every rank reads whole.

Under torch.distributed each rank must read its own part of the data. Two easy mistakes make
every rank read the *whole* dataset, usually in the same order, and nothing fails: the job
trains on world-size copies of each batch.

- **Wrapping before** ``accelerator.prepare``. ``prepare`` shards only ``DataLoader``\\ s and
  returns anything else unchanged, so a SmartLoader passed to it keeps its unsharded
  DataLoader (and its batches stay on the CPU). Under accelerate with several processes an
  unprepared ``DataLoader`` is therefore an error.
- **No DistributedSampler** under torchrun. Here an unsharded ``DataLoader`` can be
  deliberate (each rank opens its own files), so it is a warning.

A third makes each rank read ``1/world`` of its intended share: a ``DataLoader`` that already
has a ``DistributedSampler`` passed to ``accelerator.prepare``, which splits its batches
across the processes again (a warning).

Only ``torch.utils.data.DataLoader`` over a map-style dataset is judged; any other loader
(adapters, custom iterables, iterable datasets) is taken to shard itself.
"""
from __future__ import annotations

import sys
from typing import Any

from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data.distributed import DistributedSampler

__all__ = ["sharding_problem", "samplers_of", "unsharded", "ERROR", "WARNING"]

ERROR, WARNING = "error", "warning"


def _accelerate_processes() -> int:
    """Processes of an initialised accelerate ``Accelerator`` (0 when there is none).

    Reads accelerate only if the program imported it, and never initialises it."""
    state = sys.modules.get("accelerate.state")
    if state is None or not state.is_initialized():
        return 0
    return int(state.AcceleratorState().num_processes)


def _prepared_by_accelerate(loader: Any) -> bool:
    # type(), not isinstance: accelerate's loaders report DataLoader as their __class__
    return type(loader).__module__.startswith("accelerate.")


def samplers_of(loader: Any) -> list:
    """The sampler objects inside a (possibly accelerate-prepared) DataLoader."""
    out, seen = [], set()
    todo = [getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        out.append(obj)
        todo += [getattr(obj, "sampler", None), getattr(obj, "batch_sampler", None)]
    return out


def sharding_problem(loader: Any, world: int) -> tuple[str, str] | None:
    """``(ERROR or WARNING, message)`` when ``loader`` is not this rank's shard, else None.

    ``world`` is the torch.distributed world size (> 1)."""
    prepared = _prepared_by_accelerate(loader)
    if not prepared and not isinstance(loader, DataLoader):
        return None  # not ours to judge: adapters and custom loaders shard themselves
    if isinstance(getattr(loader, "dataset", None), IterableDataset):
        return None  # an iterable dataset splits its own stream (or accelerate dispatches it)
    distributed_sampler = any(isinstance(s, DistributedSampler) for s in samplers_of(loader))
    if prepared:
        if distributed_sampler:
            return WARNING, (
                "smartloader: the DataLoader passed to accelerator.prepare() has a "
                "DistributedSampler, and prepare() splits its batches across the "
                f"{world} processes again, so each process reads 1/{world} of its shard. "
                "Give prepare() a plain DataLoader (shuffle=True or a RandomSampler) and "
                "let it shard the data")
        return None
    if distributed_sampler:
        return None
    if _accelerate_processes() > 1:
        return ERROR, (
            f"smartloader: the wrapped DataLoader is not sharded across the {world} "
            "processes: accelerator.prepare() was not applied to it (prepare() returns a "
            "SmartLoader unchanged), so every process would read the whole dataset. Call "
            "model, optimizer, loader = accelerator.prepare(model, optimizer, loader) first "
            "and wrap the loader it returns, or use "
            "smartloader.integrations.accelerate.prepare_and_wrap(accelerator, model, "
            "optimizer, loader, config)")
    return WARNING, (
        f"smartloader: {world} ranks, but the wrapped DataLoader has no DistributedSampler, "
        "so unless each rank's dataset is already its own part of the data, every rank "
        "reads the whole data set. Use DataLoader(dataset, sampler=DistributedSampler("
        "dataset, shuffle=True, seed=0), ...) (and loader.set_epoch(epoch) every epoch). "
        "Under PyTorch Lightning, which injects one only into a DataLoader it is handed "
        "(Trainer(use_distributed_sampler=True), the default): return the DataLoader itself "
        "from train_dataloader and add smartloader.integrations.lightning."
        "SmartLoaderCallback, which wraps it after Lightning has")


def unsharded(loader: Any) -> str | None:
    """Why ``loader`` would hand every rank the whole data set, or None.

    Only the unmistakable case is named: a plain ``torch.utils.data.DataLoader`` over a
    map-style dataset (not a ``Subset``, the usual way to pre-shard one) whose sampler is the
    default ``RandomSampler`` or ``SequentialSampler`` and whose batch sampler is the default
    ``BatchSampler``, so nothing in it knows the rank. DataLoader subclasses and custom
    samplers shard in their own ways and are not second-guessed.
    """
    from torch.utils.data import (BatchSampler, DataLoader, IterableDataset, RandomSampler,
                                  SequentialSampler, Subset)
    if type(loader) is not DataLoader or isinstance(loader.dataset, (IterableDataset, Subset)):
        return None
    sampler = loader.sampler
    batch_sampler = loader.batch_sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        return None
    if type(sampler) not in (RandomSampler, SequentialSampler):
        return None
    return (f"its sampler is a {type(sampler).__name__} over the whole "
            f"{type(loader.dataset).__name__} and it has no DistributedSampler")

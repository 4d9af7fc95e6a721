"""Hugging Face accelerate: ``accelerator.prepare`` first, then wrap (see ``docs/accelerate.md``).

The supported order is::

    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    loader = smartloader.wrap(loader, model, config, total_steps=N)

``prepare`` shards the DataLoader across the processes and moves its batches to the device;
wrapping the prepared loader builds each pool from this process's shard, on the device.
Wrapped the other way round, ``prepare`` returns the SmartLoader unchanged (it prepares only
``DataLoader``\\ s) and every process would read the whole dataset; SmartLoader refuses that at
the start of its first epoch (:mod:`smartloader.pipeline.sharding`).

:func:`prepare_and_wrap` does both in the right order and checks what exact resume needs.
Gradient accumulation needs nothing: ``with accelerator.accumulate(model):`` counts the
batches SmartLoader yields, and SmartLoader yields the epoch's last batch while the prepared
loader reports its end (``end_of_dataloader``), so that step syncs too.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch.utils.data import RandomSampler

from smartloader.api import wrap
from smartloader.pipeline.loader import SmartLoader
from smartloader.pipeline.sharding import samplers_of

__all__ = ["prepare_and_wrap", "resume_problem"]

logger = logging.getLogger("smartloader")


def resume_problem(prepared_loader: Any) -> str | None:
    """Why a prepared loader cannot give exact mid-epoch resume, or ``None`` if it can.

    SmartLoader resumes by re-reading the interrupted epoch's batches, so the loader must
    yield the same batches for the same epoch in a new process. accelerate replaces a
    shuffling ``RandomSampler`` by its ``SeedableRandomSampler`` (order = seed + epoch) only
    with ``use_seedable_sampler=True``; otherwise the order comes from a generator whose
    position a new process does not restore."""
    try:
        from accelerate.data_loader import SeedableRandomSampler
    except ImportError:  # pragma: no cover - accelerate without it is older than we support
        return None
    for s in samplers_of(prepared_loader):
        if isinstance(s, RandomSampler) and not isinstance(s, SeedableRandomSampler):
            return ("smartloader: the prepared DataLoader shuffles with a plain RandomSampler, "
                    "whose order a new process does not reproduce, so resuming from a "
                    "mid-epoch state_dict() would yield different batches. Create the "
                    "Accelerator with dataloader_config=accelerate.DataLoaderConfiguration("
                    "use_seedable_sampler=True) (and call accelerate.utils.set_seed(seed))")
    return None


def prepare_and_wrap(accelerator: Any, model: torch.nn.Module, optimizer: Any, loader: Any,
                     config: Any = None, *, loss_fn: Callable | None = None,
                     callback: Callable | None = None, **overrides: Any):
    """``accelerator.prepare(model, optimizer, loader)``, then :func:`smartloader.wrap` on the
    prepared loader with the prepared model.

    Args:
        accelerator: an ``accelerate.Accelerator``.
        model, optimizer: passed to ``prepare`` (the optimizer may be ``None``).
        loader: a plain ``torch.utils.data.DataLoader`` (not yet prepared, not a SmartLoader).
        config, loss_fn, callback, **overrides: as for :func:`smartloader.wrap`.

    Returns:
        ``(model, optimizer, loader)``: the prepared model and optimizer and the SmartLoader
        (``optimizer`` is ``None`` if it was).

    Logs a warning when the prepared loader's order is not reproducible per epoch
    (:func:`resume_problem`): training is unaffected, exact resume is not possible.
    """
    if isinstance(loader, SmartLoader):
        raise TypeError("prepare_and_wrap: loader is already a SmartLoader; pass the DataLoader "
                        "it wraps (loader.loader), which accelerator.prepare() can shard")
    if type(loader).__module__.startswith("accelerate."):
        raise TypeError("prepare_and_wrap: loader was already prepared by accelerate; pass the "
                        "original DataLoader, or call smartloader.wrap(loader, model, ...) on "
                        "the prepared one")
    if optimizer is None:
        model, loader = accelerator.prepare(model, loader)
    else:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    problem = resume_problem(loader)
    if problem is not None:
        logger.warning("%s", problem)
    return model, optimizer, wrap(loader, model, config, loss_fn=loss_fn, callback=callback,
                                  **overrides)

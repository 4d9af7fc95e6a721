"""How long the run is: ``total_epochs`` turned into ``total_steps`` for the wrapped loader,
and the warning for ``total_steps = epochs * len(loader)`` (a selection epoch yields fewer
steps, so the last phases would never be reached)."""
from __future__ import annotations

import logging
from typing import Any

import torch

from smartloader.config.schema import Config
from smartloader.config.steps import Consumption, run_steps, steps_for_epochs, unreached_phases
from smartloader.errors import ConfigError

__all__ = ["by_epochs", "warn_unreached"]

logger = logging.getLogger("smartloader")


def _length(loader: Any) -> int | None:
    """``len(loader)``, the smallest over all ranks under torch.distributed; None without."""
    try:
        n = len(loader)
    except TypeError:
        n = None
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = torch.tensor([-1 if n is None else n], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        n = None if int(t) < 0 else int(t)
    return n


def by_epochs(cfg: Config, loader: Any) -> tuple[Config, int | None]:
    """``total_epochs`` turned into ``total_steps`` for this loader, and the steps those
    epochs yield (rounding may leave them a step or two past it); the config and None
    without it."""
    if cfg.total_epochs is None:
        return cfg, cfg.total_steps
    n = _length(loader)
    if not n:
        raise ConfigError(f"total_epochs: SmartLoader derives total_steps from len(loader), "
                          f"and the wrapped {type(loader).__name__} has "
                          f"{'no len()' if n is None else 'len() 0'}; give total_steps instead")
    steps = steps_for_epochs(cfg, cfg.total_epochs, n)
    logger.info("total_epochs %d of %d wrapped batches: total_steps %d", cfg.total_epochs, n,
                steps)
    derived = cfg.with_length(total_steps=steps)
    return derived, run_steps(Consumption.of(derived), cfg.total_epochs, n)


def warn_unreached(cfg: Config, loader: Any, phases: tuple, consumption: Consumption) -> None:
    """The common mistake ``total_steps = epochs * len(loader)``: a selection epoch yields
    fewer steps, so the last phases are never reached. Warn at wrap(), naming them."""
    total = cfg.total_steps
    try:
        n = len(loader)
    except TypeError:
        return
    if total is None or not n or total % n or not any(p.selects for p in phases):
        return
    epochs = total // n
    got = run_steps(consumption, epochs, n)
    lost = unreached_phases(phases, got)
    if got < total and lost:
        names = ", ".join(f"{p.name!r} (steps {p.start}-{p.stop - 1})" for p in lost)
        logger.warning(
            "total_steps %d is %d x len(loader), but %d epoch(s) of %d wrapped batches yield "
            "only %d steps through SmartLoader (a selection step reads pool_factor %d "
            "batches), so phase %s is never reached if the loop runs %d epochs; set "
            "total_epochs: %d instead (SmartLoader derives the steps), or run "
            "smartloader.epochs_for_steps(loader, %d) epochs", total, epochs, epochs, n, got,
            cfg.pool_factor, names, epochs, epochs, total)

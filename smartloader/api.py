"""The one line a training loop needs: :func:`wrap`."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from smartloader.adapters.detect import adapt
from smartloader.config import steps as _steps
from smartloader.config.schema import load_config
from smartloader.pipeline.loader import SmartLoader

__all__ = ["wrap", "steps_for_epochs", "epochs_for_steps"]


def wrap(loader: Iterable, model: torch.nn.Module, config: Any = None, *,
         loss_fn: Callable | None = None, callback: Callable | None = None,
         **overrides: Any) -> SmartLoader:
    """Wrap ``loader`` in a :class:`~smartloader.SmartLoader`: the one line a loop needs.

    ``loader`` is anything iterated once per epoch: a ``DataLoader``, your own loader class,
    a list of batches, an FFCV ``Loader`` or a DALI ``DALIGenericIterator`` (their adapters are
    applied here: :mod:`smartloader.adapters.detect`). ``config`` is a YAML path, a mapping,
    a :class:`~smartloader.Config` or None for the defaults; ``overrides`` replace top-level
    keys, e.g. ``total_steps=10_000``.

    >>> loader = smartloader.wrap(loader, model, "smartloader.yaml", total_steps=10_000)
    ... # doctest: +SKIP
    """
    return SmartLoader(adapt(loader), model, config, loss_fn=loss_fn, callback=callback,
                       **overrides)


def _batches(loader: Any) -> int:
    if isinstance(loader, int) and not isinstance(loader, bool):
        return loader
    try:
        return len(adapt(loader))
    except TypeError:
        raise TypeError(f"{type(loader).__name__} has no len(); pass the number of batches "
                        f"per epoch instead") from None


def steps_for_epochs(loader: Any, epochs: int, config: Any = None, **overrides: Any) -> int:
    """The steps SmartLoader yields over ``epochs`` epochs of ``loader`` (or of that many
    wrapped batches per epoch, given as an int) with ``config``: what ``total_epochs: N``
    sets ``total_steps`` to.

    >>> smartloader.steps_for_epochs(train_loader, 10, "smartloader.yaml")  # doctest: +SKIP
    """
    # the run as total_epochs describes it
    cfg = load_config(config, **overrides).with_length(total_epochs=epochs)
    return _steps.steps_for_epochs(cfg, epochs, _batches(loader))


def epochs_for_steps(loader: Any, total_steps: int, config: Any = None,
                     **overrides: Any) -> int:
    """How many epochs of ``loader`` an epoch loop must run for SmartLoader to yield
    ``total_steps`` steps with ``config`` (a selection epoch yields fewer steps than the
    wrapped loader has batches), so ``for epoch in range(n)`` reaches the cool-down."""
    cfg = load_config(config, **overrides).with_length(total_steps=total_steps)
    return _steps.epochs_for_steps(cfg, total_steps, _batches(loader))

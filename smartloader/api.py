"""The one line a training loop needs: :func:`wrap`."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from smartloader.adapters.detect import adapt
from smartloader.pipeline.loader import SmartLoader

__all__ = ["wrap"]


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

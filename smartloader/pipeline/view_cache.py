"""The small-view cache of ``pool_source: {type: two_resolution, cache: true}``.

A view ``dataset.low_res(index, size)`` depends only on (index, size) when ``low_res`` is
deterministic, so once loaded it need not be loaded again. :class:`ViewCache` keeps every
loaded view of a dataset of ``n`` samples in one preallocated buffer per per-sample field
(for ``(uint8 [C, size, size], label, index)`` views: ``[n, C, size, size]`` uint8 and two
``[n]`` tensors) in the main process, allocated at the first views it stores: about ``n``
times the bytes of one view (``n * C * size * size`` for uint8 images). A field that is not
per-sample (a scalar the collate function returns once) is kept from the first views.

The cache is not part of the loader's state: a resumed run refills it as it loads views, and
chooses the same samples, because a cached view equals a loaded one.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from smartloader.common import batch as B

__all__ = ["ViewCache"]

logger = logging.getLogger("smartloader")


class ViewCache:
    """The views of ``n`` samples, filled as they load (see the module docstring).

    Args:
        n: the dataset's length (views are cached by dataset index).
        max_gb: the largest buffer (GiB) allowed; a larger one is refused when the first
            views arrive, with an error naming ``pool_source.cache_max_gb``.
    """

    def __init__(self, n: int, max_gb: float) -> None:
        self.n, self.max_gb = n, max_gb
        self.have = torch.zeros(n, dtype=torch.bool)
        self.data: Any = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers (0 before the first views)."""
        total = [0]

        def leaf(items: Sequence[Any]) -> Any:
            if isinstance(items[0], (torch.Tensor, np.ndarray)) and B._leading(items[0]) == self.n:
                total[0] += items[0].nbytes
            return items[0]

        if self.data is not None:
            B._map([self.data], leaf)
        return total[0]

    def missing(self, indices: torch.Tensor) -> torch.Tensor:
        """The distinct ``indices`` not cached yet, in their first order."""
        need = indices[~self.have[indices]].tolist()
        return torch.tensor(list(dict.fromkeys(need)), dtype=torch.int64)

    def store(self, indices: torch.Tensor, views: Any) -> None:
        """Keep ``views`` (collated, one per entry of ``indices``)."""
        b = indices.numel()
        if self.data is None:
            self.data = self._allocate(views, b)
        at = indices

        def leaf(items: Sequence[Any]) -> Any:
            buf, x = items
            if B._leading(x) != b or B._leading(buf) != self.n:
                return buf
            if isinstance(buf, (torch.Tensor, np.ndarray)):
                if tuple(x.shape[1:]) != tuple(buf.shape[1:]) or x.dtype != buf.dtype:
                    raise ValueError(
                        f"pool_source.cache: low_res returned a view field of shape "
                        f"{tuple(x.shape[1:])} {x.dtype}, the cache holds "
                        f"{tuple(buf.shape[1:])} {buf.dtype}; with cache: true every view "
                        f"must have the same shape and dtype (or set cache: false)")
                buf[at if isinstance(buf, torch.Tensor) else at.numpy()] = x
            else:
                for i, v in zip(at.tolist(), x):
                    buf[i] = v
            return buf

        B._map([self.data, views], leaf)
        self.have[at] = True

    def take(self, indices: torch.Tensor) -> Any:
        """The cached views of ``indices`` (all cached), collated as loaded views are."""
        return B.take(self.data, indices, self.n)

    def _allocate(self, views: Any, b: int) -> Any:
        per = [0]

        def size(items: Sequence[Any]) -> Any:
            x = items[0]
            if isinstance(x, (torch.Tensor, np.ndarray)) and B._leading(x) == b:
                per[0] += x.nbytes // max(b, 1)
            return x

        B._map([views], size)
        gib = per[0] * self.n / 2 ** 30
        if gib > self.max_gb:
            raise ValueError(
                f"pool_source.cache: {self.n} views of {per[0]} bytes need {gib:.2f} GiB, "
                f"above pool_source.cache_max_gb: {self.max_gb:g}; raise cache_max_gb (the "
                f"memory must fit in the main process), lower pool_source.size, or set "
                f"cache: false")

        def leaf(items: Sequence[Any]) -> Any:
            x = items[0]
            if B._leading(x) != b:
                return x
            if isinstance(x, torch.Tensor):
                return torch.empty((self.n,) + tuple(x.shape[1:]), dtype=x.dtype)
            if isinstance(x, np.ndarray):
                return np.empty((self.n,) + x.shape[1:], dtype=x.dtype)
            return [None] * self.n

        data = B._map([views], leaf)
        logger.info("pool_source.cache: %d views of %d bytes, %.2f GiB of main-process "
                    "memory (filled as views load)", self.n, per[0], gib)
        return data

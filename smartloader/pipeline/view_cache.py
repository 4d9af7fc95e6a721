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

With ``cache_dir`` the buffers are files, memory-mapped (``torch.from_file(shared=True)``),
in a folder named by the view size, the dataset's length and its key (:func:`dataset_key`):
views loaded by one run are there for the next, for every rank on the machine and for a
resumed run, and :func:`prefill` loads them all before training (``smartloader views``).
Each field is one file (``field<k>.bin``), ``filled.u8`` marks the views written (a view's
bytes are written before its mark), ``layout.pkl`` holds the structure of a collated batch of
views and ``meta.json`` (written last) what the folder holds. Every per-sample field must
then be a tensor (a list of strings cannot be mapped).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from typing import Any, Sequence

import numpy as np
import torch

from smartloader.common import batch as B

__all__ = ["ViewCache", "dataset_key", "prefill"]

logger = logging.getLogger("smartloader")


class ViewCache:
    """The views of ``n`` samples, filled as they load (see the module docstring).

    Args:
        n: the dataset's length (views are cached by dataset index).
        max_gb: the largest buffer (GiB) allowed; a larger one is refused when the first
            views arrive, with an error naming ``pool_source.cache_max_gb``.
    """

    def __init__(self, n: int, max_gb: float, folder: str | None = None,
                 meta: dict | None = None) -> None:
        self.n, self.max_gb = n, max_gb
        #: the cache's folder (``cache_dir``), or None: in memory
        self.folder = folder
        self.meta = dict(meta or {}, n=n, format=_FORMAT)
        #: 1 where the view of that index is cached
        self.have = torch.zeros(n, dtype=torch.uint8)
        self.data: Any = None
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            self.have = _mapped(os.path.join(folder, "filled.u8"), (n,), torch.uint8)
            if os.path.exists(os.path.join(folder, "meta.json")):
                self._open()

    @classmethod
    def on_disk(cls, cache_dir: str, dataset: Any, size: int) -> "ViewCache":
        """The cache of ``dataset``'s views at ``size`` px in ``cache_dir`` (its own
        subfolder, made or reused)."""
        key = dataset_key(dataset)
        n = len(dataset)
        name = f"views-{size}px-{n}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        return cls(n, float("inf"), os.path.join(cache_dir, name), {"size": size, "key": key})

    @property
    def cached(self) -> int:
        """How many views are cached."""
        return int(self.have.sum())

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
        need = indices[self.have[indices] == 0].tolist()
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
        self.have[at] = 1  # after the views: a marked view is complete

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
        if self.folder is not None:
            return self._create(views, b, per[0], gib)
        if gib > self.max_gb:
            raise ValueError(
                f"pool_source.cache: {self.n} views of {per[0]} bytes need {gib:.2f} GiB, "
                f"above pool_source.cache_max_gb: {self.max_gb:g}; raise cache_max_gb (the "
                f"memory must fit in the main process), lower pool_source.size, set "
                f"cache_dir to keep them on disk, or set cache: false")

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

    # -- on disk --------------------------------------------------------------------------
    def _create(self, views: Any, b: int, per: int, gib: float) -> Any:
        """Map a file per per-sample field of ``views`` and write the layout and meta."""
        fields: list[tuple[tuple, str]] = []

        def leaf(items: Sequence[Any]) -> Any:
            x = items[0]
            if B._leading(x) != b:
                return x  # not per sample: kept in the layout as it is
            if not isinstance(x, torch.Tensor):
                raise ValueError(
                    f"pool_source.cache_dir: low_res's views have a per-sample field of "
                    f"type {type(x).__name__} after collating; a cache on disk maps "
                    f"tensors only: return tensors (or numbers) from low_res, or remove "
                    f"cache_dir to cache in memory")
            fields.append((tuple(x.shape[1:]), str(x.dtype).replace("torch.", "")))
            return _Field(len(fields) - 1)

        layout = B._map([views], leaf)
        meta = dict(self.meta, fields=[[list(s), d] for s, d in fields], view_bytes=per)
        _atomic(os.path.join(self.folder, "layout.pkl"), pickle.dumps(layout))
        _atomic(os.path.join(self.folder, "meta.json"), json.dumps(meta, indent=1).encode())
        logger.info("pool_source.cache_dir: %d views of %d bytes, %.2f GiB in %s "
                    "(memory-mapped, filled as views load)", self.n, per, gib, self.folder)
        self.meta = meta
        return self._map(layout)

    def _open(self) -> None:
        """Map an existing folder's files, after checking that it holds this dataset's
        views."""
        where = os.path.join(self.folder, "meta.json")
        with open(where) as fh:
            meta = json.load(fh)
        for k in ("format", "n", "size", "key"):
            if k in self.meta and meta.get(k) != self.meta[k]:
                raise ValueError(
                    f"pool_source.cache_dir: {where} holds views with {k} "
                    f"{meta.get(k)!r}, this run's is {self.meta[k]!r} (another dataset or "
                    f"version); delete {self.folder} or set another cache_dir")
        with open(os.path.join(self.folder, "layout.pkl"), "rb") as fh:
            layout = pickle.load(fh)  # written by this class, in the user's own folder
        self.meta = meta
        self.data = self._map(layout)

    def _map(self, layout: Any) -> Any:
        fields = self.meta["fields"]

        def leaf(items: Sequence[Any]) -> Any:
            f = items[0]
            if not isinstance(f, _Field):
                return f
            shape, dtype = fields[f.k]
            return _mapped(os.path.join(self.folder, f"field{f.k}.bin"),
                           (self.n,) + tuple(shape), getattr(torch, dtype))

        return B._map([layout], leaf)


_FORMAT = 1


class _Field:
    """A per-sample field of a cache on disk: the number of its file."""

    def __init__(self, k: int) -> None:
        self.k = k


def _mapped(path: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """A tensor of ``shape`` backed by the file ``path`` (made, zero-filled, if absent):
    writes go to the file, and every process mapping it sees them."""
    n = int(np.prod(shape))
    return torch.from_file(path, shared=True, size=n, dtype=dtype).view(shape)


def _atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (several ranks may write it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def same_views(a: Any, b: Any) -> bool:
    """Whether two collated batches of views are equal, field by field."""
    same = [True]

    def leaf(items: Sequence[Any]) -> Any:
        x, y = items
        if isinstance(x, torch.Tensor):
            same[0] &= isinstance(y, torch.Tensor) and x.shape == y.shape and bool(
                torch.equal(x, y))
        elif isinstance(x, np.ndarray):
            same[0] &= bool(np.array_equal(x, y))
        else:
            same[0] &= x == y
        return x

    try:
        B._map([a, b], leaf)
    except ValueError:  # different structures
        return False
    return same[0]


def not_deterministic(index: int, size: int) -> ValueError:
    return ValueError(
        f"pool_source.cache: low_res({index}, {size}) returned different views on two "
        f"loads (seeded differently): low_res draws random numbers, so a cached view would "
        f"be its first draw forever; make low_res deterministic (no random transform) or "
        f"set cache: false")


def dataset_key(dataset: Any) -> str:
    """What names a dataset's views on disk: its ``cache_key()`` if it has one (a
    :class:`~smartloader.sources.jpeg_folder.JPEGFolder`'s covers every file's path, size
    and modification time), else its type and length, with a warning that a changed dataset
    of the same length would reuse stale views."""
    key = getattr(dataset, "cache_key", None)
    if callable(key):
        return str(key())
    t = type(dataset)
    logger.warning("pool_source.cache_dir: %s has no cache_key(); its views on disk are "
                   "named by its type and length only, so a changed dataset of the same "
                   "length would reuse stale views; give it a cache_key() method that "
                   "changes with its contents", t.__name__)
    return f"{t.__module__}.{t.__qualname__}:{len(dataset)}"


def prefill(dataset: Any, size: int, cache_dir: str, *, workers: int = 2, chunk: int = 256,
            collate_fn: Any = None, progress: bool = True, timeout_s: float = 120.0) -> dict:
    """Load every view of ``dataset`` at ``size`` px not yet in ``cache_dir`` (what
    ``pool_source: {cache: true, cache_dir}`` reads), ``chunk`` samples a ticket across
    ``workers`` processes, collated with ``collate_fn`` (default ``default_collate``: pass
    the DataLoader's own if it has one). Returns ``{"views", "loaded", "seconds",
    "folder"}``; a run that then scores pools loads no views at all."""
    import time

    from torch.utils.data import default_collate

    from smartloader.pipeline.workers import SampleWorkers
    cache = ViewCache.on_disk(cache_dir, dataset, size)
    need = cache.missing(torch.arange(len(dataset)))
    t0 = time.perf_counter()
    bar = None
    if progress and need.numel():
        from tqdm.auto import tqdm
        bar = tqdm(total=need.numel(), unit="view", desc=f"views at {size} px")
    pool = SampleWorkers(dataset, workers, size, timeout_s, collate_fn or default_collate)
    try:
        parts = [need[a:a + chunk] for a in range(0, need.numel(), chunk)]
        tickets: list[tuple[int, torch.Tensor]] = []
        if parts:  # the first view twice, seeded differently: low_res must not draw
            first = int(parts[0][0])
            a, b = (pool.result(pool.submit("low", [first], [s])) for s in (1, 2))
            if not same_views(a, b):
                raise not_deterministic(first, size)
        for i, part in enumerate(parts):  # keep every worker busy, two tickets each
            tickets.append((pool.submit("low", part.tolist(), [0] * part.numel()), part))
            while len(tickets) > 2 * workers or (i == len(parts) - 1 and tickets):
                ticket, done = tickets.pop(0)
                cache.store(done, pool.result(ticket))
                if bar is not None:
                    bar.update(done.numel())
    finally:
        pool.close()
        if bar is not None:
            bar.close()
    return {"views": len(dataset), "loaded": int(need.numel()),
            "seconds": time.perf_counter() - t0, "folder": cache.folder}

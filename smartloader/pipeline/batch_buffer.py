"""Shared-memory batch buffers the worker processes write their chunks into.

A full-resolution batch is loaded as one chunk per worker. Concatenating the chunks in the
main process would copy every image once more there, on the cores the workers use, so the
main process allocates, for each batch, shared-memory tensors shaped as the previous
batch's large per-sample fields (:func:`layout_of`, :func:`buffer_for`); each worker stacks
its chunk's samples straight into its rows (``default_collate``) or copies its collated chunk
there (any other ``collate_fn``) and returns ``WRITTEN`` for that field, and
:func:`assemble` yields the buffer itself. A field that did not fit (another shape or
dtype: the first batches, a resolution change) comes back as a tensor and is concatenated
as :func:`smartloader.common.batch.concat_batches` does. Buffers are never reused: a
yielded batch is the caller's to keep.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from smartloader.common import batch as B
from smartloader.pipeline.workers import BY_VALUE, WRITTEN

__all__ = ["layout_of", "buffer_for", "assemble"]


@dataclass(frozen=True)
class _Field:
    """A buffered per-sample tensor field: one sample's shape, and the dtype."""

    shape: tuple
    dtype: torch.dtype


def layout_of(batch: Any, n: int) -> Any:
    """The structure of ``batch`` (``n`` samples) with a :class:`_Field` for each large
    per-sample CPU tensor and None elsewhere; None if no field is worth a buffer (small
    fields, labels and indices, travel by value more cheaply than through a segment)."""
    found = []

    def leaf(items: Sequence[Any]) -> Any:
        x = items[0]
        ok = isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[0] == n \
            and x.device.type == "cpu" and x.layout == torch.strided and x.nbytes >= BY_VALUE
        found.append(ok)
        return _Field(tuple(x.shape[1:]), x.dtype) if ok else None

    layout = B._map([batch], leaf)
    return layout if any(found) else None


def buffer_for(layout: Any, n: int) -> Any:
    """Fresh shared-memory tensors of ``n`` samples for the fields of ``layout``."""
    if layout is None:
        return None

    def leaf(items: Sequence[Any]) -> Any:
        f = items[0]
        if f is None:
            return None
        # allocated in shared memory directly (as DataLoader workers' collate does): the
        # main process never touches the pages; the workers fill them
        st = torch.UntypedStorage._new_shared(n * math.prod(f.shape) * f.dtype.itemsize)
        return torch.empty(0, dtype=f.dtype).set_(st, 0, (n,) + f.shape)

    return B._map([layout], leaf)


def assemble(out: Any, parts: list, chunks: Sequence[tuple[int, int]]) -> Any:
    """One batch from the workers' results ``parts`` of the chunks ``(offset, samples)``
    written into ``out`` (None: no buffer; the parts are concatenated)."""
    sizes = [n for _, n in chunks]
    if out is None:
        return parts[0] if len(parts) == 1 else B.concat_batches(parts, sizes)

    def leaf(items: Sequence[Any]) -> Any:
        buf, got = items[0], items[1:]
        if all(g is WRITTEN for g in got):
            return buf
        pieces = [buf[a:a + n] if g is WRITTEN else g for g, (a, n) in zip(got, chunks)]
        return B.concat_batches(pieces, sizes)

    return _zip_map(out, parts, sizes, leaf)


def _zip_map(out: Any, parts: list, sizes: list[int], leaf: Any) -> Any:
    """Walk the buffer structure ``out`` and the chunks ``parts`` together, calling
    ``leaf([buffer field, chunk fields...])`` where ``out`` has a tensor; other fields are
    concatenated as :func:`~smartloader.common.batch.concat_batches` does."""
    first = parts[0]
    if isinstance(first, Mapping) and isinstance(out, Mapping) and list(out) == list(first):
        d = {k: _zip_map(out[k], [p[k] for p in parts], sizes, leaf) for k in first}
        return d if type(first) is dict else type(first)(d)
    if isinstance(first, (list, tuple)) and not B.is_plain_list(first) \
            and isinstance(out, (list, tuple)) and len(out) == len(first):
        items = [_zip_map(out[i], [p[i] for p in parts], sizes, leaf)
                 for i in range(len(first))]
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    if isinstance(out, torch.Tensor):
        return leaf([out] + list(parts))
    return B.concat_batches(parts, sizes)

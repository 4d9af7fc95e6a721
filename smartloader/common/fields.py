"""Which field of a batch is the input, the target and the sample index, without keys.

Batches come as people have them: ``(x, y)``, ``(x, y, index)``, ``(index, x, y)``, or dicts
with the usual names. With no ``input_key`` / ``target_key`` / ``index_key`` configured,
:func:`detect_fields` decides by names first and by dtype and shape second:

- the **input** is never an index: it is a tensor or array with two or more dimensions, or a
  floating one; position 0 when it qualifies (the common ``(x, y)``), else the only field that
  does. In a mapping the names ``image``, ``images``, ``pixel_values``, ``input``, ``inputs``,
  ``x`` come first.
- the **target** is the first per-sample field after the input (before it if none follows);
  in a mapping ``label``, ``labels``, ``target``, ``targets``, ``y``.
- the **index** is a remaining 1-D integer field (``(x, y, index)``, ``(index, x, y)``), or a
  mapping's ``index``, ``idx``, ``id``, ``indices``; None when there is none or it is unclear.

A batch where this is not clear (no field qualifies as the input, or several image-shaped ones
compete) raises :class:`~smartloader.errors.BatchError` listing every field with its dtype
and shape and naming the key to set.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from smartloader.errors import BatchError

__all__ = ["INPUT_NAMES", "TARGET_NAMES", "INDEX_NAMES", "detect_fields", "describe"]

INPUT_NAMES = ("image", "images", "pixel_values", "input", "inputs", "x")
TARGET_NAMES = ("label", "labels", "target", "targets", "y")
INDEX_NAMES = ("index", "idx", "id", "indices")


def _array_like(v: Any) -> bool:
    return isinstance(v, (torch.Tensor, np.ndarray))


def _is_float(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return v.dtype.is_floating_point
    return isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)


def _is_int(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return not v.dtype.is_floating_point and not v.dtype.is_complex and v.dtype != torch.bool
    return isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.integer)


def _data(v: Any) -> bool:
    """Could be a model input: 2+ dims, or floating."""
    return _array_like(v) and (v.ndim >= 2 or (_is_float(v) and v.ndim == 1))


def _image(v: Any) -> bool:
    return _array_like(v) and v.ndim >= 3


def _index_like(v: Any) -> bool:
    if _array_like(v):
        return v.ndim == 1 and _is_int(v)
    return isinstance(v, (list, tuple)) and bool(v) and all(
        isinstance(e, int) and not isinstance(e, bool) for e in v)


def describe(batch: Any) -> str:
    """One line per top-level field: its key, type, dtype and shape."""
    items = batch.items() if isinstance(batch, Mapping) else enumerate(batch)
    out = []
    for k, v in items:
        if _array_like(v):
            out.append(f"  [{k!r}] {type(v).__name__} {v.dtype} shape {tuple(v.shape)}")
        elif isinstance(v, (list, tuple)):
            out.append(f"  [{k!r}] {type(v).__name__} of {len(v)}")
        else:
            out.append(f"  [{k!r}] {type(v).__name__}")
    return "\n".join(out)


def _ambiguous(batch: Any, what: str) -> BatchError:
    return BatchError(f"input_key: cannot tell which field is the input ({what}); the batch "
                      f"holds:\n{describe(batch)}\nset input_key (and target_key) in the "
                      f"config, e.g. input_key: 1, target_key: 2")


def _detect_sequence(batch: Any) -> tuple[tuple, tuple, tuple | None]:
    fields = list(batch)
    if len(fields) < 2:
        raise BatchError(f"input_key: the batch has {len(fields)} field(s); SmartLoader needs "
                         f"an input and a target:\n{describe(batch)}")
    if _data(fields[0]):
        i = 0
    else:
        data = [p for p, v in enumerate(fields) if _data(v)]
        if not data:
            raise _ambiguous(batch, "no field is a floating or image-shaped tensor")
        images = [p for p in data if _image(fields[p])]
        if len(images) > 1:
            raise _ambiguous(batch, f"fields {images} are all image-shaped")
        i = images[0] if images else data[0]
    t = i + 1 if i + 1 < len(fields) else i - 1
    rest = [p for p in range(len(fields)) if p not in (i, t) and _index_like(fields[p])]
    index = (rest[0],) if len(rest) == 1 else None
    return (i,), (t,), index


def _detect_mapping(batch: Mapping) -> tuple[tuple, tuple, tuple | None]:
    names = list(batch)
    ik = next((n for n in INPUT_NAMES if n in batch), None)
    if ik is None:
        data = [n for n in names if _data(batch[n])]
        images = [n for n in data if _image(batch[n])]
        if len(images) == 1 or (not images and len(data) == 1):
            ik = (images or data)[0]
        else:
            raise BatchError(
                f"input_key: the batch is a mapping without any of the keys "
                f"{', '.join(INPUT_NAMES)}, and its fields do not say which is the input:\n"
                f"{describe(batch)}\nset input_key in the config (e.g. input_key: "
                f"{(images or data or names)[0]!r})")
    tk = next((n for n in TARGET_NAMES if n in batch), None)
    if tk is None:
        raise BatchError(f"target_key: the batch is a mapping without any of the keys "
                         f"{', '.join(TARGET_NAMES)}:\n{describe(batch)}\nset target_key "
                         f"in the config")
    xk = next((n for n in INDEX_NAMES if n in batch and _index_like(batch[n])), None)
    return (ik,), (tk,), None if xk is None else (xk,)


def detect_fields(batch: Any) -> tuple[tuple, tuple, tuple | None]:
    """``(input key path, target key path, index key path or None)`` of ``batch``."""
    if isinstance(batch, Mapping):
        return _detect_mapping(batch)
    if isinstance(batch, (list, tuple)):
        return _detect_sequence(batch)
    raise BatchError(f"input_key: cannot find the input in a batch of type "
                     f"{type(batch).__name__}; yield a tuple or a dict, or set input_key")

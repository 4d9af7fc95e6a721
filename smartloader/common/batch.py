"""Batch structure: find fields, concatenate batches into a pool, subset a pool.

A batch is any nesting of tuples, lists, namedtuples and mappings whose leaves are tensors,
numpy arrays, lists of plain values (file names, ids) or anything else. A leaf is
*per-sample* when its leading dimension (or length) equals the batch size; per-sample leaves
are concatenated and subset together, so inputs, targets, indices, masks and file names stay
aligned. Any other leaf (a scalar, a string, a tensor with another leading size) is taken
from the pool's first batch unchanged.

A list or tuple holding only plain values (str, bytes, int, float, bool, None) is a leaf,
as the default collate function produces for strings; one holding tensors, arrays, lists or
mappings is a container.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

_PLAIN = (str, bytes, int, float, bool, type(None))

__all__ = ["resolve_key", "get_field", "replace_field", "batch_size_of", "concat_batches", "take",
           "pin"]


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def is_plain_list(x: Any) -> bool:
    return (isinstance(x, (list, tuple)) and not _is_namedtuple(x)
            and all(isinstance(e, _PLAIN) for e in x))


def resolve_key(batch: Any, key: tuple | None, role: str) -> tuple:
    """The key path of the input (``role="input"``) or target field of ``batch``.

    ``key=None`` means the default: position 0 / 1 of a tuple or list, key ``image`` /
    ``label`` of a mapping. Raises ``KeyError`` naming the config key to set when absent.
    """
    if key is not None:
        get_field(batch, key, f"{role}_key")  # raises if missing
        return key
    if isinstance(batch, Mapping):
        default = "image" if role == "input" else "label"
        if default not in batch:
            raise KeyError(f"{role}_key: the batch is a mapping without key {default!r} "
                           f"(keys: {', '.join(map(str, batch))}); set {role}_key in the config")
        return (default,)
    if isinstance(batch, (list, tuple)) and not is_plain_list(batch):
        pos = 0 if role == "input" else 1
        if len(batch) <= pos:
            raise KeyError(f"{role}_key: the batch has {len(batch)} element(s), no position "
                           f"{pos}; set {role}_key in the config")
        return (pos,)
    raise KeyError(f"{role}_key: cannot find the {role} in a batch of type "
                   f"{type(batch).__name__}; yield a tuple or a dict, or set {role}_key")


def get_field(batch: Any, key: Sequence, name: str = "key") -> Any:
    x = batch
    for part in key:
        try:
            x = getattr(x, part) if isinstance(part, str) and _is_namedtuple(x) else x[part]
        except (AttributeError, KeyError, IndexError, TypeError):
            raise KeyError(f"{name}: {list(key)!r} does not exist in the batch "
                           f"(failed at {part!r})") from None
    return x


def batch_size_of(x: Any) -> int:
    """Leading size of a per-sample field (the input); for a mapping of keyword inputs
    (``{"input_ids": ..., "attention_mask": ...}``), that of its first tensor."""
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim >= 1:
        return int(x.shape[0])
    if isinstance(x, (list, tuple)):
        return len(x)
    if isinstance(x, Mapping):
        for v in x.values():
            if isinstance(v, (torch.Tensor, np.ndarray)) and v.ndim >= 1:
                return int(v.shape[0])
        raise TypeError(f"the input is a mapping with no tensor with a batch dimension "
                        f"(keys {list(x)})")
    raise TypeError(f"the input must be a tensor, array or list with a batch dimension, "
                    f"got {type(x).__name__}")


def _map(items: Sequence[Any], leaf: Callable[[Sequence[Any]], Any]) -> Any:
    """Walk batches of the same structure together, calling ``leaf`` on aligned leaves."""
    first = items[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for it in items[1:]:
            if not isinstance(it, Mapping) or list(it) != keys:
                raise ValueError("batches in one pool have different structures: keys "
                                 f"{keys} vs {list(it) if isinstance(it, Mapping) else type(it)}")
        out = {k: _map([it[k] for it in items], leaf) for k in keys}
        return out if type(first) is dict else type(first)(out)
    if isinstance(first, (list, tuple)) and not is_plain_list(first):
        for it in items[1:]:
            if type(it) is not type(first) or len(it) != len(first):
                raise ValueError("batches in one pool have different structures")
        parts = [_map([it[i] for it in items], leaf) for i in range(len(first))]
        if _is_namedtuple(first):
            return type(first)(*parts)
        return type(first)(parts)
    return leaf(items)


def concat_batches(batches: Sequence[Any], sizes: Sequence[int]) -> Any:
    """One pool from consecutive batches; ``sizes[i]`` is batch i's number of samples."""
    total = sum(sizes)

    def leaf(items: Sequence[Any]) -> Any:
        first = items[0]
        per_sample = all(_leading(x) == s for x, s in zip(items, sizes))
        if not per_sample:
            return first
        if isinstance(first, torch.Tensor):
            return torch.cat(list(items))
        if isinstance(first, np.ndarray):
            return np.concatenate(list(items))
        out = [e for x in items for e in x]
        assert len(out) == total
        return out if isinstance(first, list) else type(first)(out)

    return _map(list(batches), leaf)


def _leading(x: Any) -> int | None:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return int(x.shape[0]) if x.ndim >= 1 else None
    if is_plain_list(x):
        return len(x)
    return None


def take(pool: Any, index: torch.Tensor, n: int) -> Any:
    """The samples ``index`` (1-D LongTensor into a pool of ``n``) of every per-sample field.

    Tensor fields are indexed on their own device; the index is copied to each device once.
    Host reads: none while every field is a tensor on the index's device. A CPU tensor field
    with the index on an accelerator (a CPU loader feeding a GPU model) needs the index on
    the host, and so do numpy and list fields (file names): the index is then copied to
    the host once, blocking. (A non-blocking device-to-host copy would let the host index
    the CPU tensor before the copy had landed.)
    """
    per_device: dict[Any, torch.Tensor] = {}
    host: list = []

    def idx_on(device: torch.device) -> torch.Tensor:
        if device not in per_device:
            per_device[device] = index.to(device, non_blocking=device.type != "cpu")
        return per_device[device]

    def host_index() -> list[int]:
        if not host:
            host.append(idx_on(torch.device("cpu")).tolist())  # host read: list fields
        return host[0]

    def leaf(items: Sequence[Any]) -> Any:
        x = items[0]
        if _leading(x) != n:
            return x
        if isinstance(x, torch.Tensor):
            return x.index_select(0, idx_on(x.device))
        if isinstance(x, np.ndarray):
            return x[np.asarray(host_index(), dtype=np.int64)]
        out = [x[i] for i in host_index()]
        return out if isinstance(x, list) else type(x)(out)

    return _map([pool], leaf)


def replace_field(batch: Any, key: Sequence, value: Any) -> Any:
    """A copy of ``batch`` with the field at ``key`` replaced; every other field is the same
    object. Tuples, lists, namedtuples and mappings are rebuilt as their own type."""
    if not key:
        return value
    head, rest = key[0], key[1:]
    if isinstance(batch, Mapping):
        out = dict(batch)
        out[head] = replace_field(batch[head], rest, value)
        return out if type(batch) is dict else type(batch)(out)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        name = head if isinstance(head, str) else batch._fields[head]
        return batch._replace(**{name: replace_field(getattr(batch, name), rest, value)})
    if isinstance(batch, (list, tuple)):
        items = list(batch)
        items[head] = replace_field(items[head], rest, value)
        return items if isinstance(batch, list) else type(batch)(items)
    raise TypeError(f"cannot replace field {head!r} in a {type(batch).__name__}")


def pin(batch: Any) -> Any:
    """``batch`` with every CPU tensor in page-locked memory (as a DataLoader with
    ``pin_memory=True`` yields it), so copies to the accelerator can be asynchronous."""

    def leaf(items: Sequence[Any]) -> Any:
        x = items[0]
        return x.pin_memory() if isinstance(x, torch.Tensor) and x.device.type == "cpu" else x

    return _map([batch], leaf)

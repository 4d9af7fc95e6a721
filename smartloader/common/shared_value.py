"""A number the main process can change while DataLoader workers keep running.

Worker processes hold a *copy* of the dataset and its transforms, so a plain float set in
the main process never reaches them, and re-creating workers every step would be far too
slow. :class:`SharedValue` keeps the number in a one-element tensor in shared memory:
forked workers inherit the mapping, and spawned/forkserver workers receive a handle to the
same memory when the dataset is pickled (torch's multiprocessing reductions). The core
wrapper calls :meth:`SharedValue.set` every step with the scheduled augmentation magnitude;
a transform calls :meth:`SharedValue.get` in ``__getitem__``.

A worker may prefetch a few batches (``prefetch_factor * num_workers``) before a new value
is set, so those batches still carry the old value: the change lands within that many
batches, which is negligible for a slowly moving schedule.
"""
from __future__ import annotations

import torch


class SharedValue:
    """One float64 in shared memory; ``get``/``set`` are a single aligned 8-byte
    read/write, so readers see either the old or the new value, never a mix.

    >>> v = SharedValue(4.0)
    >>> v.set(5.5); v.get()
    5.5
    """

    def __init__(self, value: float = 0.0) -> None:
        self._tensor = torch.tensor([float(value)], dtype=torch.float64).share_memory_()

    def get(self) -> float:
        """The current value."""
        return float(self._tensor[0])

    def set(self, value: float) -> None:
        """Set the value seen by every process holding this object."""
        self._tensor[0] = float(value)

    @property
    def is_shared(self) -> bool:
        return self._tensor.is_shared()

    def __float__(self) -> float:
        return self.get()

    def __repr__(self) -> str:
        return f"SharedValue({self.get()!r})"

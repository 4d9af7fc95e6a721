"""Bounded replay memory of per-sample records (OPIN, ALGORITHMS.md §2).

Pure functions: :func:`capacity_from`, :func:`fifo_slots`, :func:`reservoir_slots`,
:func:`last_writer`. Thin class: :class:`ReplayMemory`, which stores records, draws them by
priority and saves/loads its whole state exactly.
"""
from __future__ import annotations

from typing import Mapping

import torch

from smartloader.common.progress import Progress
from smartloader.replay.priority import AlphaSchedule, epr_priority, importance_weights

POLICIES = ("reservoir", "fifo")
PRIORITIES = ("uniform", "epr")

#: Bytes per slot beside the sample data: one float32 loss. Priorities are not stored; they
#: are recomputed from the losses at each draw because alpha changes over training.
OVERHEAD_BYTES_PER_SLOT = 4

_STATE_KEYS = frozenset({"capacity", "policy", "seen", "fields", "losses", "generator"})


def capacity_from(value: int | float, dataset_size: int | None = None) -> int:
    """Capacity in samples from an ``int`` (samples) or a ``float`` in (0, 1] (fraction).

    A fraction is ``max(1, round(value * dataset_size))`` -- rounded, not floored, so
    ``0.29 * 100`` gives 29 and not 28. ``1`` (int) is one sample, ``1.0`` (float) the whole
    dataset.
    """
    if isinstance(value, bool):
        raise ValueError(f"capacity must be an int or a float, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"capacity must be >= 1 sample, got {value}")
        return value
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ValueError(f"a fractional capacity must be in (0, 1], got {value!r}")
        if dataset_size is None or dataset_size < 1:
            raise ValueError(f"a fractional capacity needs the dataset size, got {dataset_size!r}")
        return max(1, round(value * dataset_size))
    raise ValueError(f"capacity must be an int or a float, got {type(value).__name__}")


def fifo_slots(seen: int, batch: int, capacity: int) -> torch.Tensor:
    """Slot of each of ``batch`` new items when ``seen`` items came before: ``(seen+i) % capacity``."""
    return torch.arange(seen, seen + batch, dtype=torch.long) % capacity


def reservoir_slots(seen: int, batch: int, capacity: int,
                    generator: torch.Generator) -> torch.Tensor:
    """Algorithm R slot of each of ``batch`` new items (-1: not kept) after ``seen`` items.

    Item number ``t`` of the stream (0-based) goes to slot ``t`` while ``t < capacity``;
    afterwards it draws ``j`` uniform in ``{0..t}`` and replaces slot ``j`` if ``j < capacity``.
    Every item seen so far is then in the memory with the same probability
    ``capacity / seen``. One float64 is drawn per item past the first ``capacity``, in stream
    order, so a batch of any size consumes ``generator`` exactly as items one at a time would:
    batched insertion gives the very same memory as one-at-a-time insertion.
    """
    t = torch.arange(seen, seen + batch, dtype=torch.long)
    slots = t.clone()
    late = t >= capacity
    n_late = int(late.sum())
    if n_late:
        u = torch.rand(n_late, generator=generator, dtype=torch.float64)
        span = (t[late] + 1).to(torch.float64)
        j = torch.minimum((u * span).floor().to(torch.long), t[late])
        slots[late] = torch.where(j < capacity, j, torch.full_like(j, -1))
    return slots


def last_writer(slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For per-item target ``slots`` (-1: dropped), the ``(slot, item)`` pairs that survive.

    When two items of one batch target the same slot the later one wins, as it would one at a
    time. Returns ``(dest, src)``, sorted by slot, each slot once.
    """
    items = torch.nonzero(slots >= 0).flatten()
    if items.numel() == 0:
        return items, items
    n = slots.numel()
    key = slots[items] * n + items                 # sort by slot, then by item order
    key = key.sort().values
    dest, src = key // n, key % n
    keep = torch.ones_like(dest, dtype=torch.bool)
    keep[:-1] = dest[1:] != dest[:-1]             # last item of each slot's run
    return dest[keep], src[keep]


class ReplayMemory:
    """A bounded memory of per-sample records, drawn by priority.

    A record is a set of named per-sample tensors, e.g. ``{"input": uint8 [C,H,W], "target":
    int64 [], "index": int64 []}``. Storage is allocated on the first :meth:`add` as one tensor
    per field of shape ``[capacity, *sample_shape]`` in the sample's own dtype (uint8 stays
    uint8: an ImageNet 224² image costs 150 KB, not 600 KB as float32).

    Args:
        capacity: number of samples kept (>= 1); see :func:`capacity_from` for fractions.
        policy: ``"reservoir"`` (default; Algorithm R: a uniform sample of the whole stream so
            far, which is what a one-pass learner wants to revisit) or ``"fifo"`` (the latest
            ``capacity`` samples).
        priority: ``"uniform"`` (default; OPIN: "uniform is very hard to beat") or ``"epr"``
            (``P = 1 - alpha * exp(-loss)``, see :func:`~smartloader.replay.epr_priority`).
        alpha: EPR's alpha, a float (constant) or an :class:`AlphaSchedule`; ignored for
            uniform. Default: decay 1.0 -> 0.0 linearly over training.
        device: where the records live (default CPU); draws are gathered there.
        pin_memory: pin CPU storage for fast asynchronous copies to the GPU; ignored (no error)
            when CUDA is not available or ``device`` is not the CPU. Default False because
            pinning a large memory takes page-locked host RAM away from everything else.
        seed: seed of the memory's own ``torch.Generator`` (reservoir and draws); global RNGs
            are never touched.

    Samples added without a loss get the loss ``+inf``, i.e. the maximum EPR priority 1, so
    they are drawn at least as often as any known sample until :meth:`update_losses` sets it.
    """

    def __init__(self, capacity: int, *, policy: str = "reservoir", priority: str = "uniform",
                 alpha: float | AlphaSchedule | None = None, device: str | torch.device = "cpu",
                 pin_memory: bool = False, seed: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        if alpha is None:
            alpha = AlphaSchedule(1.0, 0.0, "linear")
        elif not isinstance(alpha, AlphaSchedule):
            alpha = AlphaSchedule(float(alpha))
        self.capacity = capacity
        self.policy = policy
        self.priority = priority
        self.alpha = alpha
        self.device = torch.device(device)
        self.pin_memory = (pin_memory and self.device.type == "cpu"
                           and torch.cuda.is_available())
        self._generator = torch.Generator().manual_seed(seed)
        self._storage: dict[str, torch.Tensor] | None = None
        self._losses = torch.full((capacity,), float("inf"), dtype=torch.float32)
        self._seen = 0

    # -- sizes -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of filled slots, ``min(seen, capacity)``."""
        return min(self._seen, self.capacity)

    @property
    def seen(self) -> int:
        """Number of samples ever passed to :meth:`add` (reservoir needs it)."""
        return self._seen

    @property
    def bytes_per_sample(self) -> int:
        """Sum over fields of ``element_size * numel`` of one sample; 0 before the first add."""
        if self._storage is None:
            return 0
        return sum(t.element_size() * t[0].numel() for t in self._storage.values())

    @property
    def data_nbytes(self) -> int:
        """Bytes of record storage: exactly ``capacity * bytes_per_sample`` (0 before the first add)."""
        return self.capacity * self.bytes_per_sample

    @property
    def overhead_nbytes(self) -> int:
        """Bytes beside the records: ``capacity * OVERHEAD_BYTES_PER_SLOT`` (float32 losses)."""
        return self.capacity * OVERHEAD_BYTES_PER_SLOT

    @property
    def nbytes(self) -> int:
        """``data_nbytes + overhead_nbytes``."""
        return self.data_nbytes + self.overhead_nbytes

    @property
    def fields(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]] | None:
        """``{name: (sample_shape, dtype)}`` once allocated, else None."""
        if self._storage is None:
            return None
        return {k: (tuple(t.shape[1:]), t.dtype) for k, t in self._storage.items()}

    # -- writing -----------------------------------------------------------------------------
    def _allocate(self, spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
        self._storage = {
            name: torch.empty((self.capacity, *shape), dtype=dtype, device=self.device,
                              pin_memory=self.pin_memory)
            for name, (shape, dtype) in spec.items()
        }

    def add(self, fields: Mapping[str, torch.Tensor],
            losses: torch.Tensor | None = None) -> torch.Tensor:
        """Insert a batch; every tensor in ``fields`` has the batch as leading dim.

        ``losses`` (shape ``[batch]``, optional) are the samples' current losses, e.g. from the
        training step that just used them; unknown losses are stored as ``+inf``. The first call
        fixes the field names, per-sample shapes and dtypes; later calls must match them exactly
        (no silent casts). Returns, per batch item, the slot it now occupies or -1 when the
        policy did not keep it (reservoir) or a later item of the same batch took its slot.
        """
        if not fields:
            raise ValueError("add() needs at least one field")
        batch = None
        for name, value in fields.items():
            if not isinstance(value, torch.Tensor) or value.ndim == 0:
                raise ValueError(f"field {name!r} must be a tensor with a leading batch dim")
            if batch is None:
                batch = value.shape[0]
            elif value.shape[0] != batch:
                raise ValueError(f"field {name!r} has batch {value.shape[0]}, expected {batch}")
        if losses is not None and tuple(losses.shape) != (batch,):
            raise ValueError(f"losses must have shape ({batch},), got {tuple(losses.shape)}")
        spec = {k: (tuple(v.shape[1:]), v.dtype) for k, v in fields.items()}
        if self._storage is None:
            if batch == 0:
                return torch.empty(0, dtype=torch.long)
            self._allocate(spec)
        elif spec != self.fields:
            raise ValueError(f"fields {spec} do not match the memory's {self.fields}")

        if self.policy == "fifo":
            slots = fifo_slots(self._seen, batch, self.capacity)
        else:
            slots = reservoir_slots(self._seen, batch, self.capacity, self._generator)
        dest, src = last_writer(slots)
        if dest.numel():
            dest_dev = dest.to(self.device)
            for name, store in self._storage.items():
                value = fields[name]
                store[dest_dev] = value[src.to(value.device)].to(self.device)
            if losses is None:
                self._losses[dest] = float("inf")
            else:
                self._losses[dest] = losses.detach()[src.to(losses.device)].float().cpu()
        self._seen += batch
        kept = torch.full_like(slots, -1)
        kept[src] = dest
        return kept

    def update_losses(self, slots: torch.Tensor, losses: torch.Tensor) -> None:
        """Set the stored loss of ``slots`` (from :meth:`sample`) to ``losses`` (same shape).

        Call it before the next :meth:`add`: a later add may have put a new sample in a slot.
        With repeated slots (a draw with replacement) the last value wins.
        """
        slots = slots.detach().cpu().long().flatten()
        losses = losses.detach().float().cpu().flatten()
        if slots.numel() != losses.numel():
            raise ValueError(f"{slots.numel()} slots but {losses.numel()} losses")
        if slots.numel() and (int(slots.min()) < 0 or int(slots.max()) >= len(self)):
            raise IndexError(f"slots must be in [0, {len(self)}), the filled part of the memory")
        self._losses[slots] = losses

    # -- reading -----------------------------------------------------------------------------
    def priorities(self, progress: Progress | None = None) -> torch.Tensor:
        """Priority of every filled slot (float32, CPU, shape ``[len(self)]``)."""
        losses = self._losses[: len(self)]
        if self.priority == "uniform":
            return torch.ones_like(losses)
        return epr_priority(losses, self.alpha(progress))

    def sample(self, n: int, progress: Progress | None = None
               ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Draw ``n`` records with probability proportional to their priority.

        Without replacement when ``n <= len(self)``, with replacement otherwise. ``progress``
        is needed only for a decaying EPR alpha. Returns ``(fields, slots, weights)``: the
        records (on the memory's device), their slots (int64, CPU, for
        :meth:`update_losses`) and importance weights (float32, memory's device, mean 1, see
        :func:`~smartloader.replay.importance_weights`; all exactly 1 for uniform priority).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if len(self) == 0:
            raise RuntimeError("cannot sample from an empty replay memory")
        prios = self.priorities(progress)
        slots = torch.multinomial(prios, n, replacement=n > len(self), generator=self._generator)
        weights = importance_weights(prios[slots]).to(self.device)
        slots_dev = slots.to(self.device)
        fields = {name: store[slots_dev] for name, store in self._storage.items()}
        return fields, slots, weights

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: filled records, losses, counters, generator.

        Keys: ``capacity``, ``policy`` (checked on load), ``seen``, ``fields`` (``{name:
        tensor[len(self), ...]}`` copies, on the memory's device), ``losses`` (float32
        ``[len(self)]``) and ``generator`` (5056-byte CPU generator state). Size:
        ``len(self) * (bytes_per_sample + 4)`` bytes plus about 5 KB.
        """
        size = len(self)
        stored = {} if self._storage is None else {
            k: t[:size].clone() for k, t in self._storage.items()}
        return {"capacity": self.capacity, "policy": self.policy, "seen": self._seen,
                "fields": stored, "losses": self._losses[:size].clone(),
                "generator": self._generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` output; strict: unknown, missing or mismatched keys raise."""
        keys = set(state)
        if keys != _STATE_KEYS:
            raise KeyError(f"replay memory state: missing {sorted(_STATE_KEYS - keys)}, "
                           f"unexpected {sorted(keys - _STATE_KEYS)}")
        if state["capacity"] != self.capacity or state["policy"] != self.policy:
            raise ValueError(
                f"state is for capacity={state['capacity']} policy={state['policy']!r}, this memory "
                f"has capacity={self.capacity} policy={self.policy!r}")
        seen = int(state["seen"])
        size = min(seen, self.capacity)
        fields, losses = state["fields"], state["losses"]
        if tuple(losses.shape) != (size,):
            raise ValueError(f"state losses have shape {tuple(losses.shape)}, expected ({size},)")
        if (size == 0) != (len(fields) == 0):
            raise ValueError(f"state has seen={seen} but {len(fields)} fields")
        for name, t in fields.items():
            if t.shape[0] != size:
                raise ValueError(f"state field {name!r} has {t.shape[0]} rows, expected {size}")
        if fields:
            self._allocate({k: (tuple(t.shape[1:]), t.dtype) for k, t in fields.items()})
            for name, t in fields.items():
                self._storage[name][:size] = t.to(self.device)
        else:
            self._storage = None
        self._losses.fill_(float("inf"))
        self._losses[:size] = losses.float().cpu()
        self._generator.set_state(state["generator"])
        self._seen = seen

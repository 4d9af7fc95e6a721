"""The replay memory by index: what ``replay:`` stores on the two-resolution path.

With ``pool_source: {type: two_resolution}`` SmartLoader loads every sample by its dataset
index, so the memory need not hold the samples: it stores, per sample, the dataset index and
the seed its random transforms were drawn with (two ``int64``, 16 bytes, plus the 4-byte
loss), and a replayed sample is loaded again at full resolution by the worker processes,
through the dataset's own ``__getitem__``. A memory of a million samples takes 20 MB
whatever the image size.

- ``reaugment: true`` (the default) loads a replayed sample with a new seed, so its random
  transforms are drawn again; ``false`` loads it with the seed it was first loaded with,
  which gives the very sample that was trained on (the transforms are seeded per sample).
- Mode ``mix``: the last ``n_replay`` rows of a fresh batch are replaced by memory samples
  before it is loaded (drawn before the batch is inserted, so a batch never replays itself);
  all the fresh rows go into the memory, as on the default path.
- Mode ``steps``: each replay step draws a batch of indices from the memory.

Everything here runs when a step is *planned*, one step before it is yielded (its samples
load while the step before trains), so a draw sees the memory and the EPR priorities as they
were one step earlier than on the default path. :meth:`IndexReplay.report_losses` updates
the stored losses of the last yielded batch's rows, except rows whose slot a later planned
insert has already given to another sample.

:class:`IndexReplay` has the hooks :mod:`smartloader.pipeline.two_resolution` calls
(:meth:`~IndexReplay.plan_fresh`, :meth:`~IndexReplay.plan_replay`,
:meth:`~IndexReplay.yielded`) and the surface ``SmartLoader`` reads of any replay stage
(``memory``, ``weights``, ``replayed``, ``report_losses``, state).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common.epochs import mix_seed
from smartloader.common.progress import Progress
from smartloader.common.state import StateError, check_int, check_tensor, show, strict_keys
from smartloader.replay.config import ReplayConfig

__all__ = ["IndexReplay", "ROW_KEYS", "check_rows"]

_STATE_KEYS = ("memory",)
#: the keys of one planned batch's rows (saved in ``state.pool_source.pending.replay``)
ROW_KEYS = ("replay_pos", "replay_slots", "fresh_pos", "fresh_slots", "weights", "replayed")
_REPLAY = 0x7265706C6179


class IndexReplay:
    """The ``replay:`` memory of dataset indices and load seeds.

    Args:
        cfg: the parsed ``replay:`` section (``device`` must be ``cpu``; ``join_pool``
            false: the config check refuses the rest on this path).
        dataset_size: ``len(dataset)`` (for a fractional capacity).
        total_steps: the run's planned steps (a decaying EPR alpha needs it).
        seed: seeds the memory's generator and the replayed samples' load seeds (derive it
            from the run's seed and rank).
    """

    template = None
    pending = 0  # replay steps are planned steps on this path, never owed

    def __init__(self, cfg: ReplayConfig, dataset_size: int, total_steps: int | None,
                 seed: int) -> None:
        cfg.check_total_steps(total_steps)
        self.cfg = cfg
        self.memory = cfg.build_memory(dataset_size, model_device="cpu", seed=seed)
        self.total_steps = total_steps
        self.seed = seed
        self.weights: torch.Tensor | None = None
        self.replayed = 0
        #: the rows of the last yielded batch and of the batches planned after it
        self._inflight: list[dict[str, Any]] = []

    # -- planning -------------------------------------------------------------------------
    def _draw(self, n: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor]:
        """``n`` memory samples for ``step``: their indices, load seeds, slots, weights."""
        fields, slots, w = self.memory.sample(n, Progress(step, 0, self.total_steps))
        if self.cfg.reaugment:
            seeds = torch.tensor([mix_seed(self.seed, _REPLAY, step, j) for j in range(n)],
                                 dtype=torch.int64)
        else:
            seeds = fields["seed"].clone()
        if not self.cfg.importance_weights:
            w = torch.ones_like(w)
        return fields["index"].clone(), seeds, slots, w.float()

    def _insert(self, indices: torch.Tensor, seeds: torch.Tensor,
                losses: torch.Tensor | None) -> torch.Tensor:
        kept = self.memory.add({"index": indices, "seed": seeds},
                               None if losses is None else losses.detach().float().cpu())
        written = kept[kept >= 0]
        for rows in self._inflight:  # a slot given to a new sample no longer holds theirs
            for pos, slots in (("replay_pos", "replay_slots"), ("fresh_pos", "fresh_slots")):
                ok = ~torch.isin(rows[slots], written)
                rows[pos], rows[slots] = rows[pos][ok], rows[slots][ok]
        return kept

    def plan_fresh(self, indices: torch.Tensor, seeds: torch.Tensor,
                   losses: torch.Tensor | None, on: bool, step: int
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """A fresh batch of ``indices`` (loaded with ``seeds``; ``losses``: its scoring
        losses, or None) planned for ``step``: insert it into the memory and, in mode ``mix``
        with replay ``on``, put memory samples in its last rows. Returns the batch's indices
        and seeds to load, and its rows (for :meth:`yielded`)."""
        n = indices.numel()
        n_replay = 0
        if on and self.cfg.mode == "mix" and len(self.memory) > 0:
            n_replay = self.cfg.build_scheduler(max(n, 1)).plan(
                step, available=len(self.memory)).n_replay
        weights = torch.ones(n)
        none = torch.zeros(0, dtype=torch.int64)
        rows: dict[str, Any] = {"replay_pos": none, "replay_slots": none,
                                "fresh_pos": none, "fresh_slots": none}
        if n_replay:
            r_idx, r_seeds, slots, w = self._draw(n_replay, step)
            rows.update(replay_pos=torch.arange(n - n_replay, n), replay_slots=slots)
            weights[n - n_replay:] = w
        self._inflight.append(rows)  # its replayed slots this very insert overwrites are stale
        kept = self._insert(indices, seeds, losses)
        keep = n - n_replay  # the displaced fresh rows are in the memory, not in the batch
        ok = kept[:keep] >= 0
        rows.update(fresh_pos=torch.arange(keep)[ok], fresh_slots=kept[:keep][ok],
                    weights=weights, replayed=n_replay)
        if n_replay:
            indices = torch.cat([indices[:keep], r_idx])
            seeds = torch.cat([seeds[:keep], r_seeds])
        return indices, seeds, rows

    def plan_replay(self, n: int, step: int
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]] | None:
        """A replay step's batch of ``n`` memory samples (mode ``steps``): indices, seeds
        and rows; None while the memory is empty."""
        if len(self.memory) == 0:
            return None
        idx, seeds, slots, w = self._draw(n, step)
        rows = {"replay_pos": torch.arange(n), "replay_slots": slots,
                "fresh_pos": torch.zeros(0, dtype=torch.int64),
                "fresh_slots": torch.zeros(0, dtype=torch.int64), "weights": w, "replayed": n}
        self._inflight.append(rows)
        return idx, seeds, rows

    def yielded(self, rows: dict[str, Any] | None) -> None:
        """The batch of ``rows`` (None: a batch that neither replays nor is stored) is the
        one yielded now: ``weights``, ``replayed`` and :meth:`report_losses` are its."""
        if rows is None:
            self.weights, self.replayed = None, 0
            return
        while self._inflight and self._inflight[0] is not rows:
            self._inflight.pop(0)  # batches yielded before: their losses are past
        self.weights, self.replayed = rows["weights"], rows["replayed"]

    def report_losses(self, losses: torch.Tensor) -> None:
        """The training losses of the last yielded batch update the stored losses of its
        replayed rows and of its fresh rows the memory kept."""
        if not self._inflight or self.weights is None:
            return
        rows = self._inflight[0]
        losses = torch.as_tensor(losses).detach().reshape(-1).float().cpu()
        for pos, slots in (("replay_pos", "replay_slots"), ("fresh_pos", "fresh_slots")):
            if rows[slots].numel():
                self.memory.update_losses(rows[slots], losses[rows[pos]])

    def restore_rows(self, rows: dict[str, Any]) -> None:
        """The rows of a planned batch read back from a state (its insert and draws are in
        the memory's state already)."""
        self._inflight.append(rows)

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def check_state(self, state: Any, path: str = "state.replay") -> None:
        strict_keys(self, state, _STATE_KEYS, path)
        self.memory.check_state(state["memory"], f"{path}.memory")
        fields = state["memory"]["fields"]
        if fields and set(fields) != {"index", "seed"}:
            raise StateError(f"{path}.memory.fields: the two_resolution path's memory stores "
                             f"index and seed, got {sorted(fields)} (a state saved without "
                             f"pool_source two_resolution?)")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.memory.load_state_dict(state["memory"])
        self._inflight, self.weights, self.replayed = [], None, 0


def check_rows(rows: Any, path: str, batch: int) -> None:
    """Raise :class:`StateError` unless ``rows`` are a planned batch's rows (``batch``
    samples)."""
    if not isinstance(rows, Mapping):
        raise StateError(f"{path}: must be a dict, got {show(rows)}")
    strict_keys(None, rows, ROW_KEYS, path)
    for k in ROW_KEYS[:4]:
        check_tensor(rows[k], f"{path}.{k}", dtype=torch.int64, ndim=1)
    check_tensor(rows["weights"], f"{path}.weights", dtype=torch.float32, ndim=1)
    if rows["weights"].numel() != batch:
        raise StateError(f"{path}.weights: must have one weight per sample ({batch}), got "
                         f"{rows['weights'].numel()}")
    check_int(rows["replayed"], f"{path}.replayed", 0, batch)

"""The replay stage of :class:`~smartloader.SmartLoader` (the ``replay:`` section).

The loader always has a replay stage: :class:`NoReplay` (every hook a no-op) without a
``replay:`` section, :class:`ReplayStage` with one (:func:`build_replay_stage` picks).
Everything replay does lives here:

- :meth:`ReplayStage.fresh`: a fresh batch is about to be yielded. Its per-sample
  ``input``/``target`` (and ``index`` with ``index_key``) go into the memory, with the
  scoring losses when it was selected from a pool. In mode ``mix`` the batch's last
  ``n_replay`` rows are first replaced by memory samples (drawn before the insert, so a
  batch never replays itself); the displaced fresh rows still go into the memory.
- :meth:`ReplayStage.next_replay`: in mode ``steps``, the up to ``k`` replay batches
  owed after a fresh one, each built like the last fresh batch with its stored fields
  replaced (other per-sample fields, e.g. file names, are those of that fresh batch).
- :meth:`ReplayStage.pool_extra`: with ``join_pool: true``, memory samples appended to
  a selection pool before scoring.
- :meth:`ReplayStage.report_losses`: the training losses of the last batch update the
  stored losses (EPR priorities) of its replayed samples and of its fresh samples kept.
- state by composition, strict on load.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common import batch as B
from smartloader.errors import ConfigError
from smartloader.common.progress import Progress
from smartloader.common.state import (Stateless, StateError, check_generator_state, check_int,
                                      show, strict_keys)
from smartloader.replay.config import ReplayConfig

_STATE_KEYS = {"memory", "pending", "template", "generator"}


def dataset_size(loader: Any, batch_size: int | None) -> int | None:
    """``len(loader.dataset)``, else ``len(loader) * batch_size``, else None."""
    ds = getattr(loader, "dataset", None)
    try:
        return len(ds)  # type: ignore[arg-type]
    except TypeError:
        pass
    try:
        n = len(loader)
    except TypeError:
        return None
    return n * batch_size if batch_size else None


class ReplayStage:
    """The configured memory plus what SmartLoader needs around it.

    Args:
        cfg: the parsed ``replay:`` section.
        loader: the wrapped loader (its dataset size for a fractional capacity).
        batch_size: the wrapped loader's batch size if known (else taken from the first batch).
        index_key: ``index_key`` as a key path, or None.
        total_steps: the run's planned steps (a decaying EPR alpha needs it).
        seed: seeds the memory's generator and the re-augmentation generator.
        model_device: for ``device: model``.
    """

    def __init__(self, cfg: ReplayConfig, loader: Any, batch_size: int | None,
                 index_key: tuple | None, total_steps: int | None, seed: int,
                 model_device: torch.device) -> None:
        self.cfg = cfg
        size = None
        if isinstance(cfg.capacity, float):
            size = dataset_size(loader, batch_size)
            if size is None:
                raise ConfigError(
                    f"replay.capacity: {cfg.capacity} is a fraction of the dataset, but its "
                    f"size is unknown ({type(loader).__name__} has no len(dataset), and no "
                    f"len() with a batch_size); give capacity as a number of samples")
        cfg.check_total_steps(total_steps)
        try:
            self.memory = cfg.build_memory(size, model_device=model_device, seed=seed)
        except ConfigError:  # already names its key
            raise
        except ValueError as exc:
            raise ConfigError(f"replay.device: {exc}") from None
        self.index_key = index_key
        self.total_steps = total_steps
        self.generator = torch.Generator(device=self.memory.device).manual_seed(seed ^ 0x5EED)
        self.batch_size = batch_size
        self.pending = 0                  # replay steps still owed (mode steps)
        self.template: Any = None         # the last fresh batch, as selected (before emit)
        self.weights: torch.Tensor | None = None   # importance weights of the last batch
        self.replayed = 0                 # replayed samples in the last batch
        # (positions, slots) of the last batch: replayed rows and fresh rows kept in memory
        self._last_replay: tuple[torch.Tensor, torch.Tensor] | None = None
        self._last_fresh: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- helpers --------------------------------------------------------------------------
    def _progress(self, step: int) -> Progress:
        return Progress(step, 0, self.total_steps)

    def _fields(self, batch: Any, keys: tuple) -> dict[str, torch.Tensor]:
        ik, tk = keys
        x = B.get_field(batch, ik)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"replay: the input must be a tensor to be stored, got "
                            f"{type(x).__name__}")
        out = {"input": x, "target": torch.as_tensor(B.get_field(batch, tk))}
        if self.index_key is not None:
            out["index"] = torch.as_tensor(B.get_field(batch, self.index_key, "index_key"))
        return out

    def _put(self, batch: Any, keys: tuple, fields: Mapping[str, torch.Tensor]) -> Any:
        from smartloader.common.batch import replace_field
        ik, tk = keys
        batch = replace_field(batch, ik, fields["input"])
        batch = replace_field(batch, tk, fields["target"])
        if self.index_key is not None:
            batch = replace_field(batch, self.index_key, fields["index"])
        return batch

    def _reaugment(self, x: torch.Tensor, magnitude: Any) -> torch.Tensor:
        if not self.cfg.reaugment or x.ndim != 4 or x.shape[0] == 0:
            return x  # rand_augment works on NCHW images; anything else is replayed as stored
        from smartloader.augment import rand_augment
        if hasattr(magnitude, "get"):  # the loader's SharedValue, read only when needed
            magnitude = magnitude.get()
        return rand_augment(x, self.generator, magnitude=min(10.0, max(0.0, magnitude)))

    def _draw(self, n: int, step: int, magnitude: Any):
        fields, slots, w = self.memory.sample(n, self._progress(step))
        fields = dict(fields)
        fields["input"] = self._reaugment(fields["input"], magnitude)
        if not self.cfg.importance_weights:
            w = torch.ones_like(w)
        return fields, slots, w

    # -- hooks ----------------------------------------------------------------------------
    def pool_extra(self, pooled: Any, n: int, keys: tuple, pool_factor: int, step: int,
                   magnitude: Any) -> tuple[Any, int]:
        """``join_pool``: append ``n // pool_factor`` memory samples to the pool (built like
        its first rows). Returns the pool and how many rows were appended."""
        m = n // pool_factor
        if not self.cfg.join_pool or m < 1 or len(self.memory) == 0:
            return pooled, 0
        fields, _, _ = self._draw(m, step, magnitude)
        extra = self._put(B.take(pooled, torch.arange(m), n), keys, fields)
        return B.concat_batches([pooled, extra], [n, m]), m

    def fresh(self, batch: Any, keys: tuple, losses: torch.Tensor | None, on: bool,
              step: int, magnitude: Any, from_memory: torch.Tensor | None = None) -> Any:
        """Insert a fresh batch into the memory (mode ``mix``: first replace its tail by memory
        samples); set what ``report_losses`` and ``replay_weights`` need. ``from_memory``
        marks rows a ``join_pool`` selection took from the memory: they are not inserted
        again and count as replayed (weight 1: chosen by the selection, not by priority)."""
        fields = self._fields(batch, keys)
        n = fields["input"].shape[0]
        if self.batch_size is None:
            self.batch_size = n
        n_replay = 0
        if on and self.cfg.mode == "mix" and len(self.memory) > 0:
            plan = self.cfg.build_scheduler(max(n, 1)).plan(step, available=len(self.memory))
            n_replay = plan.n_replay
        w_all = torch.ones(n, device=self.memory.device)
        slots = None
        out = batch
        if n_replay:
            rep, slots, w = self._draw(n_replay, step, magnitude)
            mixed = {k: torch.cat([v[: n - n_replay], rep[k].to(v.device)]) for k, v in
                     fields.items()}
            out = self._put(batch, keys, mixed)
            w_all[n - n_replay:] = w
        rows = torch.arange(n)
        if from_memory is not None:
            rows = rows[~from_memory.cpu()]
        add = fields if rows.numel() == n else {k: v[rows.to(v.device)]
                                                for k, v in fields.items()}
        loss_in = None if losses is None else losses.detach()[rows.to(losses.device)]
        kept = self.memory.add(add, loss_in)
        yielded = rows < n - n_replay  # mix: rows past n - n_replay were displaced
        self._last_fresh = (rows[yielded], kept[yielded])
        if slots is not None:
            pos = torch.arange(n - n_replay, n)
            written = kept[kept >= 0]
            valid = ~torch.isin(slots, written)  # a slot this insert overwrote is stale
            self._last_replay = (pos[valid], slots[valid])
        else:
            self._last_replay = None
        self.weights = w_all
        self.replayed = n_replay + (0 if from_memory is None else int(from_memory.sum()))
        self.template = batch
        self.pending = self.cfg.k if (on and self.cfg.mode == "steps") else 0
        return out

    def next_replay(self, keys: tuple, step: int, magnitude: Any) -> Any | None:
        """The next owed replay batch (mode ``steps``), or None."""
        if self.pending <= 0 or len(self.memory) == 0 or self.template is None:
            self.pending = 0
            return None
        self.pending -= 1
        n = B.batch_size_of(B.get_field(self.template, keys[0]))
        fields, slots, w = self._draw(self.batch_size or n, step, magnitude)
        size = fields["input"].shape[0]
        template = self.template
        if size != n:  # a short last fresh batch: stretch/cut its other fields by index
            template = B.take(template, torch.arange(size) % n, n)
        out = self._put(template, keys, fields)
        self.weights = w
        self.replayed = size
        self._last_replay = (torch.arange(size), slots)
        self._last_fresh = None
        return out

    def passthrough(self) -> None:
        """A batch that neither replays nor is stored (not used today; keeps state sane)."""
        self.weights, self.replayed, self._last_replay, self._last_fresh = None, 0, None, None

    def report_losses(self, losses: torch.Tensor) -> None:
        losses = torch.as_tensor(losses).detach().reshape(-1).float().cpu()
        if self._last_replay is not None:
            pos, slots = self._last_replay
            if slots.numel():
                self.memory.update_losses(slots, losses[pos])
        if self._last_fresh is not None:
            pos, kept = self._last_fresh
            ok = kept >= 0
            if ok.any():
                self.memory.update_losses(kept[ok], losses[pos[ok]])

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "pending": self.pending,
                # the last fresh batch is needed only to build the replay batches still owed
                "template": self.template if self.pending > 0 else None,
                "generator": self.generator.get_state()}

    def check_state(self, state: Any, path: str = "state.replay") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, _STATE_KEYS, path)
        self.memory.check_state(state["memory"], f"{path}.memory")
        owed = self.cfg.k if self.cfg.mode == "steps" else 0
        pending = check_int(state["pending"], f"{path}.pending", 0, owed)
        if (pending > 0) != (state["template"] is not None):
            raise StateError(f"{path}.template: the fresh batch the owed replay steps are "
                             f"built from is needed exactly when {path}.pending > 0; pending "
                             f"is {pending}, got {show(state['template'])}")
        check_generator_state(state["generator"], f"{path}.generator", self.generator.device)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.memory.load_state_dict(state["memory"])
        self.pending = state["pending"]
        self.template = state["template"]
        self.generator.set_state(state["generator"].cpu())
        self.passthrough()


class NoReplay(Stateless):
    """The replay stage without a ``replay:`` section: nothing stored, nothing replayed."""

    memory = None
    weights = None
    replayed = 0
    pending = 0
    template = None

    def pool_extra(self, pooled: Any, n: int, *args: Any) -> tuple[Any, int]:
        return pooled, 0

    def fresh(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        return batch

    def next_replay(self, *args: Any) -> None:
        return None

    def report_losses(self, losses: torch.Tensor) -> None:
        pass

    state_path = "state.replay"


def build_replay_stage(cfg: ReplayConfig | None, loader: Any, batch_size: int | None,
                       index_key: tuple | None, total_steps: int | None, seed: int,
                       model_device: torch.device) -> "ReplayStage | NoReplay":
    """:class:`ReplayStage` for a ``replay:`` section, :class:`NoReplay` for None."""
    if cfg is None:
        return NoReplay()
    return ReplayStage(cfg, loader, batch_size, index_key, total_steps, seed, model_device)

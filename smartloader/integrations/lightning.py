"""PyTorch Lightning: :class:`SmartLoaderCallback` wraps the training DataLoader for you.

``Trainer(callbacks=[SmartLoaderCallback(config)])`` and nothing else changes: the
LightningModule's ``train_dataloader`` returns its ``DataLoader`` as before, and
``training_step`` may add the per-sample losses to what it returns (``{"loss": loss,
"losses": per_sample}``) for the scorers that learn from them. See ``docs/lightning.md``.

Why a callback and not ``return smartloader.wrap(...)`` from ``train_dataloader``:

- **Sharding.** Lightning injects a ``DistributedSampler`` (``use_distributed_sampler=True``)
  only into a ``DataLoader``, by rebuilding it from its attributes. The callback wraps the
  DataLoader Lightning has already processed, so Lightning's own sharding stays in place.
- **Epoch length.** Lightning reads ``len()`` of the training loader once, before the first
  epoch, and ends every epoch after that many batches; a SmartLoader epoch yields fewer
  batches while it selects (about ``1/pool_factor``) and more in uniform phases. The
  callback tells the fit loop each epoch's own length.
- **Prefetch.** Lightning's training fetcher reads one batch ahead only when the loader has
  no length; with the exact length it fetches each batch when it is trained on, so the batch
  ``on_train_batch_end`` sees is the one SmartLoader yielded last and ``report_losses`` is
  matched to it. The callback checks this every step and raises rather than misattribute.
- **End of epoch.** Lightning stops after ``len()`` batches without asking for one more, so
  SmartLoader would never see its epoch end; the callback asks for it (no batch is read
  that the epoch had not already read), so a checkpoint at the end of an epoch says so.
- **Checkpoints.** The callback keeps SmartLoader's state (every rank's) in its own entry of
  the checkpoint and restores it on every resume. Lightning's own loader-state mechanism
  restores only when it resumes inside an epoch (or with ``max_steps``), and tries to
  restore before the callback has wrapped the loader, so the callback hides SmartLoader's
  ``state_dict`` from it.

Lightning internals this module relies on (checked against lightning 2.6):
``trainer.fit_loop._combined_loader`` (its public ``flattened`` and ``limits`` setters),
``trainer.fit_loop._data_fetcher`` (re-iterated after the swap), ``trainer.fit_loop.max_batches``
and ``trainer.val_check_batch`` (set per epoch), ``trainer.fit_loop.epoch_loop.batch_progress``
(``is_last_batch``), and the order ``setup_data`` -> ``on_train_start`` -> (sampler
``set_epoch``, ``on_train_epoch_start``) -> ``iter()`` -> batches.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Mapping

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning

from smartloader.api import steps_for_epochs, wrap
from smartloader.config.schema import load_config
from smartloader.errors import StateError
from smartloader.pipeline.sharding import unsharded
from smartloader.pipeline.loader import SmartLoader

__all__ = ["SmartLoaderCallback"]

logger = logging.getLogger("smartloader")

#: Lightning's warning for a mid-epoch resume with a loader it cannot restore itself; the
#: callback restores SmartLoader, so it does not apply (silenced for that one check only).
_NOT_RESUMABLE = "You're resuming from a checkpoint that ended before the epoch ended"


class SmartLoaderCallback(pl.Callback):
    """Online batch selection for ``Trainer.fit``: wraps the training DataLoader in a
    :class:`~smartloader.SmartLoader` once Lightning has prepared it.

    Args:
        config: YAML path, mapping or :class:`~smartloader.Config`; ``None`` = defaults.
        model: the module that scores pools: ``None`` = the LightningModule (its
            ``forward`` must return the logits), an ``nn.Module``, or the name of a
            LightningModule attribute holding one (``"net"``).
        loss_fn: ``loss_fn(outputs, targets) -> Tensor[n]``; default per-sample cross-entropy.
        callback: called with each step's :class:`~smartloader.StepStats` (see
            :class:`~smartloader.SmartLoader`).
        losses_key: where ``training_step``'s returned dict holds the per-sample training
            losses (``reduction="none"``) handed to ``report_losses``; a dict without it,
            or a plain loss tensor, reports nothing (an error for the ``history`` scorer,
            which has no other source of losses).
        **overrides: top-level config keys, e.g. ``pool_factor=4``. Without ``total_steps``
            or ``total_epochs`` the run's length comes from the Trainer: ``max_steps`` (times
            ``accumulate_grad_batches``), else ``max_epochs``.

    ``loader`` is the SmartLoader once training has started (``None`` before).
    """

    def __init__(self, config: Any = None, *, model: Any = None,
                 loss_fn: Callable | None = None, callback: Any = None,
                 losses_key: str = "losses", **overrides: Any) -> None:
        if model is not None and not isinstance(model, (torch.nn.Module, str)):
            raise TypeError(f"SmartLoaderCallback(model=...): must be None (the "
                            f"LightningModule), an nn.Module or an attribute name, got "
                            f"{type(model).__name__}")
        self._cfg = load_config(config, **overrides)  # fail here on a bad config, not in fit
        self._model = model
        self._loss_fn = loss_fn
        self._step_callback = callback
        self.losses_key = losses_key
        self.loader: SmartLoader | None = None
        self._view: _LoaderView | None = None
        self._pending: dict | None = None   # a checkpoint's state, loaded with the loader
        self._saved_ranks: list = []        # every rank's state in that checkpoint
        self._processed = 0                 # batches trained on in this fit
        self._warned_no_losses = False
        self._filter: tuple | None = None

    # -- checks before anything runs --------------------------------------------------
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
              stage: str) -> None:
        if stage != "fit":
            return
        bad = []
        if trainer.reload_dataloaders_every_n_epochs:
            bad.append(f"reload_dataloaders_every_n_epochs="
                       f"{trainer.reload_dataloaders_every_n_epochs} (a reloaded DataLoader "
                       f"replaces the SmartLoader and its position): set it to 0")
        if trainer.overfit_batches:
            bad.append(f"overfit_batches={trainer.overfit_batches} (it cuts every epoch "
                       f"short): remove SmartLoaderCallback to overfit a few batches")
        elif trainer.limit_train_batches not in (1.0, None):
            bad.append(f"limit_train_batches={trainer.limit_train_batches!r} (it ends every "
                       f"epoch after that many batches, in the middle of SmartLoader's): "
                       f"shorten the run with max_steps or max_epochs instead")
        if bad:
            raise ValueError("SmartLoaderCallback cannot work with Trainer("
                             + "; ".join(bad) + ")")

    # -- wrap once Lightning has prepared the DataLoader ------------------------------
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        combined = trainer.fit_loop._combined_loader
        if combined is None:
            raise RuntimeError("SmartLoaderCallback: the fit loop has no training loader")
        loaders = combined.flattened
        if len(loaders) != 1:
            raise ValueError(f"SmartLoaderCallback wraps one training DataLoader; "
                             f"train_dataloader returned {len(loaders)}. Combine them into "
                             f"one DataLoader, or wrap them yourself without the callback")
        inner = loaders[0]
        if isinstance(inner, _LoaderView) and inner.owner is self:
            view = inner  # a later fit() with the same Trainer: go on with the same loader
        else:
            if isinstance(inner, (_LoaderView, SmartLoader)):
                raise TypeError("train_dataloader returned a SmartLoader, and "
                                "SmartLoaderCallback wraps the training DataLoader itself: "
                                "return the DataLoader from train_dataloader, without "
                                "smartloader.wrap")
            self._check_sharding(trainer, inner)
            view = _LoaderView(self._build(trainer, pl_module, inner), self)
            combined.flattened = [view]
        self._view, self.loader = view, view.smartloader
        self._processed = 0
        view.yielded = 0
        self._begin_epoch(trainer)
        iter(trainer.fit_loop._data_fetcher)  # the fetcher now iterates the SmartLoader

    def _check_sharding(self, trainer: "pl.Trainer", loader: Any) -> None:
        if trainer.world_size <= 1:
            return
        why = unsharded(loader)
        if why is not None:
            raise ValueError(
                f"SmartLoaderCallback: {trainer.world_size} processes train, and the training "
                f"DataLoader Lightning prepared reads the whole data set on every rank "
                f"({why}). Lightning injects a DistributedSampler only with "
                f"Trainer(use_distributed_sampler=True) (the default); set it, or give the "
                f"DataLoader your own DistributedSampler")

    def _build(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
               loader: Any) -> SmartLoader:
        model = self._model
        if model is None:
            model = pl_module
        elif isinstance(model, str):
            found = getattr(pl_module, model, None)
            if not isinstance(found, torch.nn.Module):
                raise AttributeError(f"SmartLoaderCallback(model={model!r}): the "
                                     f"LightningModule has no nn.Module attribute {model!r}")
            model = found
        cfg = self._cfg
        if cfg.total_steps is None and cfg.total_epochs is None:
            cfg = self._run_length(trainer, loader, cfg)
        smart = wrap(loader, model, cfg, loss_fn=self._loss_fn, callback=self._step_callback)
        if self._pending is not None:
            smart.load_state_dict(self._pending)
            self._pending = None
            # Lightning warns that the loader is not resumable whenever the resumed step is
            # not a multiple of the epoch's length (which it takes to be fixed): not so here
            warnings.filterwarnings("ignore", message=_NOT_RESUMABLE,
                                    category=PossibleUserWarning)
            self._filter = warnings.filters[0]
        return smart

    @staticmethod
    def _run_length(trainer: "pl.Trainer", loader: Any, cfg: Any) -> Any:
        """The config with the Trainer's run length: SmartLoader counts batches, Lightning's
        ``max_steps`` counts optimizer steps (one per ``accumulate_grad_batches`` batches)."""
        steps = trainer.max_steps if trainer.max_steps is not None else -1
        if steps >= 0 and trainer.lightning_module.automatic_optimization:
            steps *= trainer.accumulate_grad_batches
        epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        if epochs >= 0:
            by_epochs = steps_for_epochs(loader, epochs, cfg)
            if steps < 0 or by_epochs <= steps:
                return cfg.with_length(total_epochs=epochs)
        if steps >= 0:
            return cfg.with_length(total_steps=steps)
        return cfg  # open-ended: SmartLoader says which phases it uses instead

    # -- every epoch -----------------------------------------------------------------
    def on_train_epoch_start(self, trainer: "pl.Trainer",
                             pl_module: "pl.LightningModule") -> None:
        self._begin_epoch(trainer)

    def _begin_epoch(self, trainer: "pl.Trainer") -> None:
        """Give the SmartLoader the epoch and Lightning the epoch's own length (Lightning
        computed one length, of the unwrapped DataLoader, before the first epoch)."""
        smart = self.loader
        smart.set_epoch(trainer.current_epoch)
        try:
            n = len(smart)
        except TypeError:
            raise TypeError(f"SmartLoaderCallback needs a training loader with a len() (a "
                            f"{type(smart.loader).__name__} has none): Lightning ends an "
                            f"epoch by counting batches, and without a count it fetches one "
                            f"batch ahead, which breaks report_losses and exact "
                            f"checkpoints") from None
        self._view.announced = n
        trainer.fit_loop._combined_loader.limits = [n]
        trainer.fit_loop.max_batches = n
        interval = trainer.val_check_interval
        if trainer.val_check_batch is not None and isinstance(interval, float):
            trainer.val_check_batch = max(1, int(n * interval))

    # -- every batch ------------------------------------------------------------------
    def on_train_batch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                             batch: Any, batch_idx: int) -> None:
        if self._filter is not None:  # Lightning's resume check ran before this batch
            if self._filter in warnings.filters:
                warnings.filters.remove(self._filter)
            self._filter = None

    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        view, smart = self._view, self.loader
        self._processed += 1
        if view.yielded != self._processed:
            raise RuntimeError(
                f"SmartLoaderCallback: Lightning has fetched {view.yielded} batches and "
                f"trained on {self._processed}, so the batch it just trained on is not the "
                f"one SmartLoader yielded last (a fetcher reading ahead, or training_step "
                f"taking a dataloader_iter); per-sample losses and checkpoints could not be "
                f"matched to it")
        losses = outputs.get(self.losses_key) if isinstance(outputs, Mapping) else None
        if losses is not None:
            smart.report_losses(torch.as_tensor(losses).detach())
        else:
            self._no_losses(outputs)
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            view.finish_epoch()

    def _no_losses(self, outputs: Any) -> None:
        scorer = self.loader.config.strategies.get("scorer")
        got = (f"a dict with keys {sorted(outputs, key=str)}" if isinstance(outputs, Mapping)
               else type(outputs).__name__)
        if scorer is not None and scorer["type"] == "history":
            raise KeyError(f"SmartLoaderCallback: the history scorer learns only from the "
                           f"per-sample training losses, and training_step returned {got}; "
                           f"return {{'loss': loss, {self.losses_key!r}: per_sample_losses}} "
                           f"(reduction='none'), or set losses_key=")
        if not self._warned_no_losses:
            self._warned_no_losses = True
            logger.info("SmartLoaderCallback: training_step returned %s without %r; no "
                        "per-sample losses are reported (the scorer does not need them)",
                        got, self.losses_key)

    def on_train_epoch_end(self, trainer: "pl.Trainer",
                           pl_module: "pl.LightningModule") -> None:
        # on_train_batch_start returning -1 ends the epoch on a batch fetched but not
        # trained on (no on_train_batch_end): count it, and let set_epoch abandon the rest
        self._processed = self._view.yielded

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Every rank's SmartLoader state (gathered to all ranks, since rank 0 writes the
        checkpoint), or the loaded one not yet applied; empty before training starts."""
        if self.loader is None:
            return {} if self._pending is None else {"ranks": self._saved_ranks}
        if self._view.yielded != self._processed:
            raise RuntimeError("SmartLoaderCallback: a checkpoint taken while a batch is "
                               "fetched but not trained on would resume one batch ahead")
        state = self.loader.state_dict()
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ranks: list = [None] * dist.get_world_size()
            dist.all_gather_object(ranks, state)
        else:
            ranks = [state]
        return {"ranks": ranks}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:  # saved before training started
            return
        if set(state_dict) != {"ranks"} or not isinstance(state_dict["ranks"], list):
            raise StateError(f"SmartLoaderCallback state: expected {{'ranks': [one state "
                             f"per rank]}}, got keys {sorted(state_dict, key=str)}")
        ranks = state_dict["ranks"]
        dist = torch.distributed
        on = dist.is_available() and dist.is_initialized()
        rank, size = (dist.get_rank(), dist.get_world_size()) if on else (0, 1)
        if len(ranks) != size:
            raise StateError(f"SmartLoaderCallback state: saved by {len(ranks)} processes, "
                             f"resumed with {size}; SmartLoader resumes exactly only on as "
                             f"many ranks as it was saved on")
        self._saved_ranks = ranks
        self._pending = ranks[rank]
        if self.loader is not None:  # a checkpoint loaded into a running fit
            self.loader.load_state_dict(self._pending)
            self._pending = None


class _LoaderView:
    """What the fit loop iterates: the SmartLoader, counted, with a way to end its epoch.

    Reads other attributes from the SmartLoader (so Lightning finds ``sampler`` for
    ``set_epoch``, a user finds ``trainer.train_dataloader.dataset``), except
    ``state_dict``/``load_state_dict``: the callback saves the state itself, and a loader
    Lightning sees as stateful it would try to restore before the callback has wrapped it.
    """

    _HIDDEN = frozenset({"state_dict", "load_state_dict"})

    def __init__(self, smartloader: SmartLoader, owner: SmartLoaderCallback) -> None:
        self.smartloader = smartloader
        self.owner = owner
        self.yielded = 0        # batches handed to Lightning in this fit
        self.announced = 0      # len() of the epoch in progress, as Lightning was told
        self._live: Any = None  # SmartLoader's iterator for the epoch in progress

    def __iter__(self) -> "_LoaderView":
        self._live = iter(self.smartloader)
        return self

    def __next__(self) -> Any:
        batch = next(self._live)
        self.yielded += 1
        return batch

    def __len__(self) -> int:
        return len(self.smartloader)

    def finish_epoch(self) -> None:
        """Lightning has taken the epoch's last batch: let SmartLoader run to its end."""
        epoch = self.smartloader.epoch
        try:
            next(self._live)
        except StopIteration:
            return
        raise RuntimeError(f"SmartLoader has more batches in epoch {epoch} than the "
                           f"{self.announced} its len() announced, and Lightning would drop "
                           f"them: does the wrapped loader's len() match what it yields?")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in self._HIDDEN or "smartloader" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["smartloader"], name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.smartloader!r})"

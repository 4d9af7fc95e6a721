"""SmartLoader: wrap any iterable of batches and yield batches chosen by online selection.

This module is the loader's surface: construction (the stages, from the config), the public
properties, ``len()``, and state. The epoch loop is :mod:`smartloader.pipeline.epoch`, one
selection step :mod:`smartloader.pipeline.step`, the cursor and state checks
:mod:`smartloader.pipeline.state`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch

from smartloader.augment.transform import TransformStage
from smartloader.common import batch as B
from smartloader.common.epochs import check_epoch, mix_seed
from smartloader.config.keys import pool_factor_warnings
from smartloader.config.phases import (DEFAULT_PHASES, DEFAULT_PHASES_OPEN_ENDED, Phase,
                                        describe_phases)
from smartloader.config.schema import Config, load_config
from smartloader.config.steps import Consumption, steps_in_epoch
from smartloader.common.state import show, strict_keys
from smartloader.errors import StateError
from smartloader.pipeline.capabilities import on_wrap as _adapter_hook
from smartloader.pipeline.compile_watch import CompileWatch, epoch_layout
from smartloader.pipeline.distributed import DistributedSync
from smartloader.pipeline.emit import step_stats
from smartloader.pipeline.epoch import run_epoch
from smartloader.pipeline.probe import inspect_first
from smartloader.pipeline.run_length import by_epochs, warn_unreached
from smartloader.pipeline.distributed import world
from smartloader.pipeline.state import (STATE_KEYS, STATE_VERSION, Cursor, check_cursor_state,
                                        check_run_state, is_stateful)
from smartloader.pipeline.stats import StepStats, materialize
from smartloader.pipeline.two_resolution import build_pool_source, epoch_view
from smartloader.pipeline.step import SelectionStep
from smartloader.replay.stage import build_replay_stage
from smartloader.schedules.applier import ScheduleApplier
from smartloader.scoring.model import ModelHandle, default_loss
from smartloader.scoring.stage import ScoringStage
from smartloader.selection.choose import Chooser

__all__ = ["SmartLoader", "OWN_NAMES"]

logger = logging.getLogger("smartloader")


class SmartLoader:
    """Yields batches chosen from larger uniform pools by how hard the live model finds them.

    ``for batch in SmartLoader(loader, model, config): ...`` trains exactly as ``for batch in
    loader`` did, except that during *selection* phases each yielded batch is chosen from
    ``pool_factor`` consecutive batches of ``loader`` by :func:`~smartloader.ranked_multinomial`
    over their scoring losses. During *uniform* phases the wrapped batches pass through
    unchanged, one for one.

    Args:
        loader: any iterable of batches (a ``DataLoader``, a generator factory with
            ``__iter__``, FFCV/DALI adapters). Re-iterated once per epoch.
        model: the model being trained; scored without side effects (see
            :class:`~smartloader.scoring.ModelHandle`).
        config: YAML path, mapping or :class:`~smartloader.Config`; ``None`` = defaults.
        loss_fn: ``loss_fn(outputs, targets) -> Tensor[n]``; default per-sample cross-entropy.
        callback: called with the :class:`~smartloader.pipeline.stats.StepStats` of every step
            (reading them synchronises with the GPU; leave it ``None`` on fast paths); a list
            or tuple of callables is called in order (e.g. a TensorBoard writer and a
            progress bar, :mod:`smartloader.integrations.logging`).
        **overrides: replace top-level config keys, e.g. ``total_steps=10_000``.

    Epochs: each ``iter()`` runs one epoch of the wrapped loader. ``set_epoch(e)`` (also
    forwarded to the wrapped loader or its sampler) chooses the epoch; without it the epoch
    advances by one after each complete pass. A selection epoch yields about
    ``1/pool_factor`` as many batches as the wrapped loader; ``len()`` says exactly how many.

    End of an epoch: the last pool may hold fewer than ``pool_factor`` batches. If it still has
    more samples than one batch, a full batch is selected from it; if not (a lone, possibly
    partial, batch), it is yielded unchanged, like the wrapped loader's own last batch. Samples
    are never dropped silently nor padded with repeats; ``stats.short_pools`` counts these.

    A transparent wrapper: code written for the wrapped loader keeps working. Reading an
    attribute SmartLoader does not define returns the wrapped loader's (``loader.dataset``,
    ``loader.sampler``, a custom loader's ``normalize()``); assigning one sets it on the wrapped
    loader (``loader.labels = ...``). SmartLoader's own public names are :data:`OWN_NAMES`;
    where one collides with the wrapped loader's (a loader's own ``epoch`` or ``batch_size``),
    SmartLoader's wins, and ``loader.loader.<name>`` reaches the wrapped one. It pickles (and
    copies) as its constructor arguments plus its :meth:`state_dict`.
    """

    def __init__(self, loader: Iterable, model: torch.nn.Module,
                 config: Any = None, *, loss_fn: Callable | None = None,
                 callback: Callable[[StepStats], None] | None = None, **overrides: Any):
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"loader must be iterable, got {type(loader).__name__}")
        lib = type(loader).__module__.split(".")[0]
        if lib in ("ffcv", "nvidia") and not hasattr(loader, "capabilities"):
            raise TypeError(f"SmartLoader: a raw {type(loader).__module__}.{type(loader).__name__} "
                            f"needs its adapter (FFCV reuses its batch buffers, a DALI iterator "
                            f"is one-shot); use smartloader.wrap(loader, model, ...), which "
                            f"applies it, or smartloader.adapters.ffcv.FFCVAdapter / "
                            f"smartloader.adapters.dali.DALIAdapter")
        if hasattr(loader, "__next__") and iter(loader) is loader:
            raise TypeError("loader is a one-shot iterator (e.g. a generator object); pass "
                            "something that can be iterated once per epoch, such as a "
                            "DataLoader or an object whose __iter__ returns a new generator")
        cfg = load_config(config, **overrides)
        #: what len(), total_epochs and the shape plan count batches of: the wrapped loader,
        #: or the index stream of pool_source two_resolution
        self._sized = epoch_view(cfg, loader)
        cfg, run_end = by_epochs(cfg, self._sized)
        self.config: Config = cfg
        self.loader = loader
        self._phases: tuple[Phase, ...] = cfg.resolve_phases()
        self._rank = world()[0]
        self._callback = _callbacks(callback)
        bs = getattr(loader, "batch_size", None)
        #: the wrapped loader's batch size, else the first batch's (None before it)
        self._batch_size: int | None = bs if isinstance(bs, int) and bs > 0 else None
        # the stages, in the order a selection step runs them
        self._handle = ModelHandle(model, loss_fn, cfg.score_resolution, cfg.autocast)
        #: a torch.compile'd model's graph count per step (StepStats.compiled_graphs)
        self._compile = CompileWatch(model, self.planned_shapes)
        self._input_shape: tuple[int, ...] | None = None  # the first batch's, per sample
        self._schedules = ScheduleApplier(cfg.schedules, cfg.total_steps, cfg.score_resolution,
                                         self._handle)
        #: collectives under torch.distributed (equal step counts, global selection)
        self.distributed = DistributedSync(cfg.selection_scope)
        self._scoring = ScoringStage(cfg.strategies, model)
        self._chooser = Chooser(self._phases, self.distributed.ranked_log_weights
                               if cfg.selection_scope == "global" else None)
        self._transform = TransformStage(cfg.strategies.get("batch_transform"),
                                        mix_seed(cfg.seed, 0x6D6978, self._rank))
        #: None (pools of wrapped batches) or the two-resolution source (docs/two_resolution.md)
        self._pool_source = build_pool_source(cfg, loader, self._handle)
        replay_seed = mix_seed(cfg.seed, 0x7265706C, self._rank)
        if self._pool_source is not None and cfg.replay is not None:
            # the memory stores dataset indices: a replayed sample loads again by index
            self._replay = self._pool_source.replay_stage(cfg.replay, cfg.total_steps,
                                                          replay_seed)
        else:
            self._replay = build_replay_stage(
                cfg.replay, loader, self._batch_size, self._scoring.index_key,
                cfg.total_steps, replay_seed, self._handle.device)
        self._selection_step = SelectionStep(self._handle, self._scoring, self._chooser,
                                            self._replay, self.distributed, cfg.pool_factor)
        self._consumption = Consumption.of(cfg)
        self._cursor = Cursor()
        self._keys: tuple | None = None
        self._last_phase: str | None = None
        #: the step past which a warning says the run goes on (once)
        self._run_end = run_end
        self._warn_past_end = run_end is not None
        self._fallbacks_reported = 0
        if cfg.default_phases and cfg.total_steps is None:
            logger.warning("total_steps not given: using the default phases %s instead of "
                           "%s (a cool-down needs the end of training); pass total_steps=N or "
                           "total_epochs=N to get them",
                           describe_phases(DEFAULT_PHASES_OPEN_ENDED),
                           describe_phases(DEFAULT_PHASES))
        _adapter_hook(loader, self)  # capabilities check + schedule driving (adapters)
        for line in pool_factor_warnings(self._phases, cfg.pool_factor):
            logger.warning("%s", line)
        warn_unreached(cfg, self._sized, self._phases, self._consumption)

    # -- public surface -------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        """The wrapped loader's batch size (its ``batch_size``, else the first batch's size)."""
        return self._batch_size

    @property
    def stats(self) -> StepStats | None:
        """Numbers for the last yielded batch; ``None`` before the first."""
        last = self._cursor.last
        return None if last is None else materialize(step_stats(last, self._keys))

    @property
    def replay_memory(self):
        """The :class:`~smartloader.replay.ReplayMemory` (``None`` without ``replay:``);
        ``replay_memory.nbytes`` is its size."""
        return self._replay.memory

    @property
    def replay_weights(self) -> torch.Tensor | None:
        """Importance weights of the last yielded batch, one per sample (1 for fresh samples,
        mean 1 over the replayed ones); ``None`` without ``replay:`` or before a batch."""
        return self._replay.weights

    @property
    def magnitude(self):
        """:class:`~smartloader.common.shared_value.SharedValue` holding the augmentation magnitude
        of the step about to be produced (set every step; 5.0 without an ``augment``
        schedule). Pass it to transforms running in DataLoader workers; see
        :mod:`smartloader.schedules.applier` for the prefetch lag."""
        return self._schedules.magnitude

    @property
    def resolution(self) -> int | None:
        """Training resolution of the step about to be produced (``stats.resolution`` is the
        last yielded batch's); ``None`` without a ``resolution`` schedule."""
        return self._schedules.resolution_at(self._cursor.step)

    def planned_shapes(self, batch_size: int | None = None) -> list:
        """The model input signatures this run feeds the model, training ones first
        (:func:`smartloader.config.shapes.planned_shapes`): each is one ``torch.compile``
        graph. ``batch_size`` defaults to :attr:`batch_size`; the image size is the first
        batch's (before it, the resolution schedule's max); the epoch's last batch is
        planned where the wrapped loader says it (a ``DataLoader`` without ``drop_last``)."""
        from smartloader.config.shapes import planned_shapes
        bs = batch_size or self._batch_size
        if bs is None:
            raise ValueError("planned_shapes(): the batch size is not known yet (the wrapped "
                             "loader has no batch_size and no batch was drawn); pass "
                             "batch_size=N")
        per_epoch, last = epoch_layout(self._sized, bs)
        shape = self._input_shape
        return planned_shapes(self.config, bs, image_size=None if shape is None or len(shape) < 3
                              else tuple(shape[-2:]), batches_per_epoch=per_epoch,
                              last_batch=last, auto_sizes=self._handle.auto_sizes)

    def lr_scheduler(self, optimizer: torch.optim.Optimizer):
        """The config's ``lr`` schedule as an ``LRScheduler`` on ``optimizer``; call its
        ``step()`` after every ``optimizer.step()``. Raises ``ValueError`` without ``lr``."""
        return self._schedules.lr_scheduler(optimizer)

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The configured phases resolved to step ranges."""
        return self._phases

    @property
    def step(self) -> int:
        """Batches yielded so far over the whole run."""
        return self._cursor.step

    @property
    def epoch(self) -> int:
        """The epoch in progress, or the next one between epochs."""
        return self._cursor.epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next ``iter()`` runs (its seed and the wrapped sampler's epoch).

        An unfinished epoch of another number is abandoned: the next ``iter()`` starts
        ``epoch`` from its beginning, and ``len()`` / ``state_dict()`` say so."""
        check_epoch(epoch)
        cur = self._cursor
        if cur.resume is not None and cur.resume["epoch"] != epoch:
            logger.warning("set_epoch(%d) after loading a state saved in the middle of epoch "
                           "%d: the saved position is dropped and epoch %d starts from its "
                           "beginning", epoch, cur.resume["epoch"], epoch)
            cur.resume = None
            cur.loader_state = None  # the wrapped loader starts that epoch afresh too
            if self._pool_source is not None:
                self._pool_source.loaded = None
        if cur.mid_epoch and epoch != cur.epoch:
            # The consumer left epoch cur.epoch unfinished: it stopped after len() batches
            # without asking for the end (PyTorch Lightning does), or broke out of the loop.
            # That epoch is over: len() and state_dict() now describe `epoch` from its
            # beginning, and the abandoned iterator fails if it is used again.
            cur.mid_epoch = False
            cur.consumed = 0
            cur.token += 1
            cur.active = False
        cur.epoch = epoch

    def __len__(self) -> int:
        """Batches one full pass over the current (or next) epoch yields, from its start."""
        try:
            n = len(self._sized)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"len() needs a wrapped loader with a length; "
                            f"{type(self.loader).__name__} has none") from None
        if self.distributed.batch_limit is not None:  # agreed by all ranks this epoch
            n = min(n, self.distributed.batch_limit)
        cur = self._cursor
        if cur.mid_epoch:
            start = cur.epoch_start_step
        elif cur.resume is not None:
            start = cur.resume["epoch_start_step"]
        else:
            start = cur.step
        return steps_in_epoch(self._consumption, start, n)

    def __iter__(self) -> Iterator[Any]:
        self._cursor.token += 1
        return run_epoch(self, self._cursor.token)

    def __getattr__(self, name: str) -> Any:
        # only called when SmartLoader itself has no such attribute
        if name.startswith("__") or "loader" not in self.__dict__:
            raise AttributeError(name)
        inner = self.__dict__["loader"]
        try:
            return getattr(inner, name)
        except AttributeError:
            raise AttributeError(f"neither SmartLoader nor the wrapped "
                                 f"{type(inner).__name__} has an attribute {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in _OWN_ATTRS or "loader" not in self.__dict__:
            object.__setattr__(self, name, value)
        elif name in OWN_NAMES:
            raise AttributeError(
                f"{name!r} is SmartLoader's own (read-only; see help(SmartLoader)); to set the "
                f"wrapped loader's, write loader.loader.{name} = ...")
        else:
            setattr(self.__dict__["loader"], name, value)

    def __reduce__(self):
        h = self._handle
        return (_rebuild, (self.loader, h.model, self.config.to_dict(),
                           None if h.loss_fn is default_loss else h.loss_fn, self._callback,
                           self.state_dict()))

    def __repr__(self) -> str:
        return (f"SmartLoader(loader={type(self.loader).__name__}, step={self._cursor.step}, "
                f"epoch={self._cursor.epoch}, pool_factor={self.config.pool_factor}, "
                f"phases={[p.name for p in self._phases]})")

    def report_losses(self, losses: torch.Tensor, batch: Any = None) -> None:
        """Optional: the per-sample training losses (``reduction='none'``) of the batch just
        yielded, in its order. The scorer observes them (the ``history`` scorer's table, the
        ``proxy`` scorer's bank); the loop works without it. With ``replay:`` they also
        update the stored losses (EPR priorities) of the batch's replayed samples and of its
        fresh samples the memory kept.

        ``batch``: the yielded batch the losses belong to, for a loop that fetches several
        batches before training on them (gradient accumulation that prefetches, as the
        Hugging Face ``Trainer`` does); the scorer then reads the sample ids (``index_key``)
        and inputs from it. Default: the last yielded batch. Not with ``replay:``, whose
        memory knows the slots of the last yielded batch only (``ValueError``).
        """
        if batch is not None and self._replay.memory is not None:
            raise ValueError("report_losses(batch=...): with replay: the memory tracks the "
                             "slots of the last yielded batch only; report each batch's "
                             "losses before fetching the next (no prefetch), or drop replay:")
        self._scoring.report_losses(losses, batch)
        self._replay.report_losses(losses)

    def _inspect_first(self, batch: Any) -> None:
        """Find the fields and probe the model on the first batch (see :mod:`.probe`)."""
        # on the two-resolution path the views are probed instead (their own size)
        probe = self._pool_source is None and any(p.selects for p in self._phases)
        self._keys, n = inspect_first(batch, self.config, self._handle, probe)
        x = B.get_field(batch, self._keys[0])
        self._input_shape = tuple(x.shape[1:]) if isinstance(x, torch.Tensor) else None
        if self._batch_size is None:
            self._batch_size = n

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue batch for batch: the cursor (step, epoch, position,
        generator), each stage's state, the config it was saved with, the wrapped loader's
        own state, and the process layout (``world_size``, ``rank``) it was taken in.

        Taken between batches, it describes what the consumer has received. When the
        wrapped loader keeps its own position (``state_dict()`` and ``load_state_dict()``,
        as torchdata's ``StatefulDataLoader``), its state is nested under ``loader`` and
        resume restores it, so even a shuffled loader continues exactly and nothing is read
        twice. Otherwise (``loader`` is ``None``) SmartLoader re-reads, without scoring or
        yielding, the batches the interrupted epoch had consumed, which requires the wrapped
        loader to produce the same batches for the same epoch.

        Under several ranks each rank's state is its own: save one per rank
        (``torch.save(loader.state_dict(), f"loader_{rank}.pt")``), or put
        ``loader.checkpoint`` in a ``torch.distributed.checkpoint`` state dict, which keeps
        one entry per rank (see ``docs/distributed.md``).
        """
        cur = self._cursor
        if cur.loader_state is not None:   # loaded, not yet handed on
            inner = cur.loader_state
        else:
            inner = self.loader.state_dict() if is_stateful(self.loader) else None
        rank, size = world()
        extra = {}
        if self._pool_source is not None:  # only then: other states keep their keys
            extra["pool_source"] = self._pool_source.state_dict()
        return {"version": STATE_VERSION, **cur.state_dict(), **extra,
                "config": self.config.to_dict(),
                "scoring": self._scoring.state_dict(), "selection": self._chooser.state_dict(),
                "transform": self._transform.state_dict(), "replay": self._replay.state_dict(),
                "loader": inner, "world_size": size, "rank": rank}

    @property
    def checkpoint(self):
        """This loader as a ``torch.distributed.checkpoint`` entry: one opaque value per rank
        (:class:`~smartloader.pipeline.checkpoint.CheckpointState`), e.g.
        ``dcp.save({"model": ..., "loader": loader.checkpoint}, checkpoint_id=path)``."""
        from smartloader.pipeline.checkpoint import CheckpointState
        return CheckpointState(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next ``iter()`` continues where it was taken.

        Strict: every entry is checked (keys, types, ranges, tensor dtypes and shapes, the
        config it was saved with, each stage's state) before anything changes, and a problem
        raises :class:`~smartloader.errors.StateError` naming the entry's key path; a refused
        state leaves the loader as it was.
        """
        self._check_state(state)
        if self._cursor.active:
            raise RuntimeError("load_state_dict() during an iteration; call it before iter()")
        self._cursor.load_state_dict(state)
        self._cursor.loader_state = state["loader"]
        self._scoring.load_state_dict(state["scoring"])
        self._chooser.load_state_dict(state["selection"])
        self._transform.load_state_dict(state["transform"])
        self._replay.load_state_dict(state["replay"])
        if self._pool_source is not None:
            self._pool_source.load_state_dict(state["pool_source"])
        self._fallbacks_reported = int(self._chooser.fallbacks)
        self._schedules.begin_step(self._cursor.step)

    def _check_state(self, state: Any) -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; reads it and changes nothing."""
        if isinstance(state, Mapping) and "version" in state:  # first: another layout
            version = state["version"]
            if type(version) is not int or version != STATE_VERSION:
                raise StateError(f"state.version: saved {version!r}, this smartloader reads "
                                 f"{STATE_VERSION}")
        strict_keys(self, state, STATE_KEYS if self._pool_source is None
                    else STATE_KEYS | {"pool_source"}, "state")
        ours = self.config.to_dict()
        saved = state["config"]
        if not isinstance(saved, Mapping):
            raise StateError(f"state.config: must be a dict, got {show(saved)}")
        diff = [k for k in sorted(set(ours) | set(saved), key=str)
                if ours.get(k) != saved.get(k)]
        if diff:
            raise StateError("state.config: saved with a different configuration ("
                             + ", ".join(f"{k}: saved {saved.get(k)!r}, now {ours.get(k)!r}"
                                         for k in diff) + ")")
        check_cursor_state(state, "state")
        check_run_state(state, self.loader, *world())
        self._scoring.check_state(state["scoring"], "state.scoring")
        self._chooser.check_state(state["selection"], "state.selection")
        self._transform.check_state(state["transform"], "state.transform")
        self._replay.check_state(state["replay"], "state.replay")
        if self._pool_source is not None:
            self._pool_source.check_state(state["pool_source"], "state.pool_source")


#: SmartLoader's own public names: they win over the wrapped loader's on reads.
OWN_NAMES = frozenset(n for n in dir(SmartLoader) if not n.startswith("_")) | {
    "loader", "config", "distributed"}
#: The instance attributes SmartLoader sets on itself.
_OWN_ATTRS = frozenset({"loader", "config", "distributed"})


def _callbacks(callback: Any) -> Callable[[StepStats], None] | None:
    """``callback`` as one callable (``None``, a callable, or a list/tuple of them)."""
    if callback is None or callable(callback):
        return callback
    if isinstance(callback, (list, tuple)):
        bad = [i for i, c in enumerate(callback) if not callable(c)]
        if bad:
            raise TypeError(f"callback[{bad[0]}]: must be callable (called with each step's "
                            f"StepStats), got {type(callback[bad[0]]).__name__}")
        return _CallbackList(tuple(callback)) if callback else None
    raise TypeError(f"callback must be a callable, a list of callables or None, got "
                    f"{type(callback).__name__}")


class _CallbackList:
    """Several step callbacks called in order (picklable when they are)."""

    def __init__(self, callbacks: tuple):
        self.callbacks = callbacks

    def __call__(self, stats: StepStats) -> None:
        for c in self.callbacks:
            c(stats)


def _rebuild(loader, model, config, loss_fn, callback, state) -> SmartLoader:
    smart = SmartLoader(loader, model, config, loss_fn=loss_fn, callback=callback)
    smart.load_state_dict(state)
    return smart

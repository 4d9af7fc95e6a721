"""SmartLoader: wrap any iterable of batches and yield batches chosen by online selection."""
from __future__ import annotations

import itertools
import logging
import time
import warnings
from typing import Any, Callable, Iterable, Iterator

import torch

from . import batch as B
from .adapters.capabilities import on_wrap as _adapter_hook
from .apply import ScheduleApplier
from .epochs import check_epoch, forward_set_epoch, mix_seed
from .config import Config, Phase, load_config, phase_at
from .distributed import DistributedSync
from .replay.integration import ReplayIntegration
from .scoring import ModelHandle
from .selection import _gumbel_top_k, ranked_log_weights
from .stats import StepStats, materialize
from .strategy import Strategies

__all__ = ["SmartLoader", "wrap"]

logger = logging.getLogger("smartloader")

_STATE_VERSION = 1
_STATE_KEYS = {"version", "step", "epoch", "consumed", "epoch_start_step", "generator",
               "generator_device", "uniform_fallbacks", "short_pools", "config", "strategies"}


def _host_reads_cheap(device: torch.device) -> bool:
    """Whether reading a tensor on ``device`` from the host costs nothing (CPU: it is there).

    Only then does the loader read its NaN-fallback counter every step (to warn at once);
    on an accelerator the counter stays a device tensor, read at the end of the epoch, by
    ``state_dict()`` and by ``loader.stats``. ``tests/test_no_host_sync.py`` patches this to
    ``False`` to run, on the CPU, exactly the code path a GPU runs.
    """
    return device.type == "cpu"


def _dist_rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


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
        callback: called with the :class:`~smartloader.stats.StepStats` of every step (reading
            them synchronises with the GPU; leave it ``None`` on fast paths).
        **overrides: replace top-level config keys, e.g. ``total_steps=10_000``.

    Epochs: each ``iter()`` runs one epoch of the wrapped loader. ``set_epoch(e)`` (also
    forwarded to the wrapped loader or its sampler) chooses the epoch; without it the epoch
    advances by one after each complete pass. A selection epoch yields about
    ``1/pool_factor`` as many batches as the wrapped loader; ``len()`` says exactly how many.

    End of an epoch: the last pool may hold fewer than ``pool_factor`` batches. If it still has
    more samples than one batch, a full batch is selected from it; if not (a lone, possibly
    partial, batch), it is yielded unchanged, like the wrapped loader's own last batch. Samples
    are never dropped silently nor padded with repeats; ``stats.short_pools`` counts these.
    """

    def __init__(self, loader: Iterable, model: torch.nn.Module,
                 config: Any = None, *, loss_fn: Callable | None = None,
                 callback: Callable[[StepStats], None] | None = None, **overrides: Any):
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"loader must be iterable, got {type(loader).__name__}")
        if hasattr(loader, "__next__") and iter(loader) is loader:
            raise TypeError("loader is a one-shot iterator (e.g. a generator object); pass "
                            "something that can be iterated once per epoch, such as a "
                            "DataLoader or an object whose __iter__ returns a new generator")
        cfg = load_config(config, **overrides)
        self.config: Config = cfg
        self.loader = loader
        self._phases: tuple[Phase, ...] = cfg.resolve_phases()
        self._handle = ModelHandle(model, loss_fn, cfg.score_resolution, cfg.autocast)
        self._schedules = ScheduleApplier(cfg.schedules, cfg.total_steps, cfg.score_resolution,
                                          self._handle)
        self._callback = callback
        self._strategies = Strategies(cfg.strategies, self._phases, model,
                                      mix_seed(cfg.seed, 0x6D6978, _dist_rank()))
        self._rank = _dist_rank()
        #: collectives under torch.distributed (equal step counts, global selection)
        self.distributed = DistributedSync(cfg.selection_scope)
        bs = getattr(loader, "batch_size", None)
        self._batch_size: int | None = bs if isinstance(bs, int) and bs > 0 else None
        #: the ``replay:`` section's memory and hooks (smartloader/replay/integration.py)
        self._replay = None if cfg.replay is None else ReplayIntegration(
            cfg.replay, loader, self._batch_size, self._strategies.index_key, cfg.total_steps,
            mix_seed(cfg.seed, 0x7265706C, _dist_rank()), self._handle.device)
        self._step = 0
        self._epoch = 0
        self._consumed = 0
        self._epoch_start_step = 0
        self._active = False      # an iterator is running (guards load_state_dict)
        self._mid_epoch = False   # the consumer holds batches of an unfinished epoch
        self._resume: dict | None = None
        self._token = 0
        self._generator: torch.Generator | None = None
        self._fallbacks: torch.Tensor | int = 0
        self._fallbacks_reported = 0
        self._short_pools = 0
        self._stats: StepStats | None = None
        self._keys: tuple | None = None
        self._last_phase: str | None = None
        self._warned_past_end = False
        if cfg.default_phases and cfg.total_steps is None:
            logger.warning("total_steps not given: using a 100-step uniform warm-up then "
                           "ranked selection to the end, without the 10%% uniform cool-down "
                           "(it needs the end of training); pass total_steps=N to get it")
        _adapter_hook(loader, self)  # capabilities check + schedule driving (adapters/)
        for p in self._phases:
            if p.selects and cfg.pool_factor < 1 + p.beta:
                logger.warning("phase %r: beta %.3g with pool_factor %d; the paper keeps "
                               "pool_factor >= 1 + beta", p.name, p.beta, cfg.pool_factor)

    # -- public surface -------------------------------------------------------------------
    @property
    def batch_size(self) -> int | None:
        """The wrapped loader's batch size (its ``batch_size``, else the first batch's size)."""
        return self._batch_size

    @property
    def stats(self) -> StepStats | None:
        """Numbers for the last yielded batch; ``None`` before the first."""
        return None if self._stats is None else materialize(self._stats)

    @property
    def replay_memory(self):
        """The :class:`~smartloader.replay.ReplayMemory` (``None`` without ``replay:``);
        ``replay_memory.nbytes`` is its size."""
        return None if self._replay is None else self._replay.memory

    @property
    def replay_weights(self) -> torch.Tensor | None:
        """Importance weights of the last yielded batch, one per sample (1 for fresh samples,
        mean 1 over the replayed ones); ``None`` without ``replay:`` or before a batch."""
        return None if self._replay is None else self._replay.weights

    @property
    def magnitude(self):
        """:class:`~smartloader.shared_value.SharedValue` holding the augmentation magnitude
        of the step about to be produced (set every step; 5.0 without an ``augment``
        schedule). Pass it to transforms running in DataLoader workers; see
        :mod:`smartloader.apply` for the prefetch lag."""
        return self._schedules.magnitude

    @property
    def resolution(self) -> int | None:
        """Training resolution of the step about to be produced (``stats.resolution`` is the
        last yielded batch's); ``None`` without a ``resolution`` schedule."""
        return self._schedules.resolution_at(self._step)

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
        return self._step

    @property
    def epoch(self) -> int:
        """The epoch in progress, or the next one between epochs."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next ``iter()`` runs (its seed and the wrapped sampler's epoch)."""
        check_epoch(epoch)
        if self._resume is not None and self._resume["epoch"] != epoch:
            logger.warning("set_epoch(%d) after loading a state saved in the middle of epoch "
                           "%d: the saved position is dropped and epoch %d starts from its "
                           "beginning", epoch, self._resume["epoch"], epoch)
            self._resume = None
        self._epoch = epoch

    def __len__(self) -> int:
        """Batches one full pass over the current (or next) epoch yields, from its start."""
        try:
            n = len(self.loader)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"len() needs a wrapped loader with a length; "
                            f"{type(self.loader).__name__} has none") from None
        if self.distributed.batch_limit is not None:  # agreed by all ranks this epoch
            n = min(n, self.distributed.batch_limit)
        if self._mid_epoch:
            step = self._epoch_start_step
        elif self._resume is not None:
            step = self._resume["epoch_start_step"]
        else:
            step = self._step
        count = consumed = 0
        rp = self.config.replay
        extra = rp.k if rp is not None and rp.mode == "steps" else 0
        while consumed < n:
            phase = phase_at(self._phases, step)
            consumed += self.config.pool_factor if phase.selects else 1
            k = 1 + (extra if phase.replay else 0)  # k replay steps follow a fresh one
            step += k
            count += k
        return count

    def __iter__(self) -> Iterator[Any]:
        self._token += 1
        return self._run(self._token)

    def __repr__(self) -> str:
        return (f"SmartLoader(loader={type(self.loader).__name__}, step={self._step}, "
                f"epoch={self._epoch}, pool_factor={self.config.pool_factor}, "
                f"phases={[p.name for p in self._phases]})")

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue batch for batch: step, epoch, position, generator.

        Taken between batches, it describes what the consumer has received. The wrapped
        loader's own state is not included: on resume, SmartLoader re-reads (without
        scoring or yielding) the batches the interrupted epoch had consumed, which requires
        the wrapped loader to produce the same batches for the same epoch.
        """
        if self._resume is not None:
            r = self._resume
            return {"version": _STATE_VERSION, "step": self._step, "epoch": r["epoch"],
                    "consumed": r["consumed"], "epoch_start_step": r["epoch_start_step"],
                    "generator": r["generator"], "generator_device": r["generator_device"],
                    "uniform_fallbacks": int(self._fallbacks), "short_pools": self._short_pools,
                    "config": self.config.to_dict(),
                    "strategies": self._strategies.state_dict(), **self._replay_state()}
        mid = self._mid_epoch and self._consumed > 0
        gen = self._generator
        return {
            "version": _STATE_VERSION,
            "step": self._step,
            "epoch": self._epoch,
            "consumed": self._consumed if mid else 0,
            "epoch_start_step": self._epoch_start_step if mid else self._step,
            "generator": gen.get_state() if (mid and gen is not None) else None,
            "generator_device": str(gen.device) if gen is not None else None,
            "uniform_fallbacks": int(self._fallbacks),
            "short_pools": self._short_pools,
            "config": self.config.to_dict(),
            "strategies": self._strategies.state_dict(),
            **self._replay_state(),
        }

    def _replay_state(self) -> dict[str, Any]:
        # only with a replay: section, so states of runs without replay are unchanged
        return {} if self._replay is None else {"replay": self._replay.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the next ``iter()`` continues where it was taken.

        Strict: unknown or missing keys, another state version, or a state saved with a
        different configuration raise ``ValueError``.
        """
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict, got {type(state).__name__}")
        expected = _STATE_KEYS | ({"replay"} if self._replay is not None else set())
        missing, unknown = expected - set(state), set(state) - expected
        if missing or unknown:
            raise ValueError(f"state: missing keys {sorted(missing)}, unknown keys "
                             f"{sorted(unknown)}")
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"state.version: {state['version']!r}, this smartloader reads "
                             f"{_STATE_VERSION}")
        ours = self.config.to_dict()
        diff = [k for k in sorted(set(ours) | set(state["config"]))
                if ours.get(k) != state["config"].get(k)]
        if diff:
            raise ValueError("state.config: saved with a different configuration ("
                             + ", ".join(f"{k}: saved {state['config'].get(k)!r}, now "
                                         f"{ours.get(k)!r}" for k in diff) + ")")
        if self._active:
            raise RuntimeError("load_state_dict() during an iteration; call it before iter()")
        self._step = int(state["step"])
        self._epoch = int(state["epoch"])
        self._fallbacks = int(state["uniform_fallbacks"])
        self._fallbacks_reported = self._fallbacks
        self._short_pools = int(state["short_pools"])
        self._strategies.load_state_dict(state["strategies"])
        if self._replay is not None:
            self._replay.load_state_dict(state["replay"])
        self._stats = None
        self._resume = None
        self._mid_epoch = False
        self._schedules.begin_step(self._step)
        if state["consumed"] > 0:
            self._resume = {k: state[k] for k in ("epoch", "consumed", "epoch_start_step",
                                                  "generator", "generator_device")}

    # -- the pipeline ---------------------------------------------------------------------
    def _ensure_generator(self) -> torch.Generator:
        device = self._handle.device
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        return self._generator

    def _run(self, token: int) -> Iterator[Any]:
        epoch = self._epoch
        forward_set_epoch(self.loader, epoch)
        limit = self.distributed.epoch_limit(self.loader, epoch)
        gen = self._ensure_generator()
        resume, self._resume = self._resume, None
        if resume is not None and resume["epoch"] == epoch:
            if resume["generator"] is not None:
                gen.set_state(resume["generator"])
            skip, self._epoch_start_step = resume["consumed"], resume["epoch_start_step"]
        else:
            gen.manual_seed(mix_seed(self.config.seed, epoch, self._rank))
            skip, self._epoch_start_step = 0, self._step
        self._strategies.start_epoch(epoch, resumed=bool(skip))
        self._consumed = 0
        self._active = True
        self._mid_epoch = True
        it = iter(self.loader)
        try:
            for _ in range(skip):
                try:
                    next(it)
                except StopIteration:
                    raise RuntimeError(
                        f"cannot resume: the wrapped loader yields only {self._consumed} "
                        f"batches in epoch {epoch}, the saved state had consumed {skip}. "
                        f"Is it deterministic per epoch?") from None
                self._consumed += 1
            if skip:
                logger.info("resumed epoch %d: re-read %d wrapped batches", epoch, skip)
                if self._keys is None and self._replay is not None and self._replay.pending:
                    self._inspect_first(self._replay.template)
                yield from self._replays()  # replay steps owed when the state was saved
            if limit is not None:  # every rank reads the same number of batches
                it = itertools.islice(it, max(0, limit - self._consumed))
            pool: list = []
            sizes: list[int] = []
            phase = phase_at(self._phases, self._step)
            for batch in it:
                if token != self._token:
                    raise RuntimeError("this SmartLoader iterator was superseded by a newer "
                                       "iter(); use one iterator at a time")
                self._consumed += 1
                if self._keys is None:
                    self._inspect_first(batch)
                if not pool:
                    phase = self._enter_phase()
                n = B.batch_size_of(B.get_field(batch, self._keys[0]))
                if not phase.selects:
                    if self._replay is not None:
                        batch = self._replay_fresh(batch, phase, None)
                    yield self._emit(batch, phase, n, n)
                    yield from self._replays()
                    continue
                pool.append(batch)
                sizes.append(n)
                if len(pool) == self.config.pool_factor:
                    out = self._select(pool, sizes, phase)
                    pool, sizes = [], []
                    yield out
                    yield from self._replays()
            if pool:
                self._short_pools += 1
                yield self._select(pool, sizes, phase)
                yield from self._replays()
            self._report_fallbacks()
            self._epoch = epoch + 1
            self._mid_epoch = False
            self._consumed = 0
        finally:
            if token == self._token:
                self._active = False

    def _inspect_first(self, batch: Any) -> None:
        """Find the input/target fields and probe the loss on the first batch, so that a
        wrong key or loss_fn fails at the first step, not when selection starts."""
        ik = B.resolve_key(batch, self.config.input_key, "input")
        tk = B.resolve_key(batch, self.config.target_key, "target")
        inputs = B.get_field(batch, ik)
        n = B.batch_size_of(inputs)
        if self._batch_size is None:
            self._batch_size = n
        self._keys = (ik, tk)
        if any(p.selects for p in self._phases):
            if not isinstance(inputs, torch.Tensor):
                raise TypeError(f"input_key {list(ik)}: selection scores the input with the "
                                f"model, so it must be a tensor, got {type(inputs).__name__}")
            targets = B.get_field(batch, tk)
            probe = min(n, 2)
            t = targets[:probe] if isinstance(targets, torch.Tensor) else targets
            self._handle.losses(inputs[:probe], t)

    def _enter_phase(self) -> Phase:
        self._schedules.begin_step(self._step)
        phase = phase_at(self._phases, self._step)
        if phase.name != self._last_phase:
            logger.info("step %d: phase %r (%s%s)", self._step, phase.name, phase.selection,
                        f", beta {phase.beta:g}" if phase.selects else "")
            self._last_phase = phase.name
        total = self.config.total_steps
        if total is not None and self._step >= total and not self._warned_past_end:
            logger.warning("step %d is past total_steps %d; phase %r goes on", self._step,
                           total, phase.name)
            self._warned_past_end = True
        return phase

    def _emit(self, batch: Any, phase: Phase, pool_size: int, size: int,
              pool_loss=None, sel_loss=None, times=(0.0, 0.0, 0.0),
              scored_by: str | None = None) -> Any:
        batch = self._strategies.emit(batch, self._keys)
        batch, scheduled = self._schedules.finish(batch, self._keys[0], self._step)
        self._stats = StepStats(
            step=self._step, epoch=self._epoch, phase=phase.name, selection=phase.selection,
            beta=phase.beta, pool_size=pool_size, batch_size=size, pool_loss_mean=pool_loss,
            selected_loss_mean=sel_loss, pool_time_s=times[0], score_time_s=times[1],
            select_time_s=times[2], uniform_fallbacks=self._fallbacks,
            short_pools=self._short_pools, scored_by=scored_by,
            scoring_forwards=self._strategies.forwards, forwards_skipped=self._strategies.skipped,
            noisy_flagged=(None if self._strategies.guard is None
                           else self._strategies.guard.num_flagged),
            replayed=0 if self._replay is None else self._replay.replayed,
            replay_nbytes=None if self._replay is None else self._replay.memory.nbytes,
            **scheduled)
        self._step += 1
        if self._callback is not None:
            self._callback(materialize(self._stats))
        return batch

    def _select(self, pool: list, sizes: list[int], phase: Phase) -> Any:
        t0 = time.perf_counter()
        n = sum(sizes)
        k = self._batch_size or sizes[0]
        if n <= k:  # a short last pool: nothing to choose from
            self.distributed.skip()
            out = pool[0] if len(pool) == 1 else B.concat_batches(pool, sizes)
            if self._replay is not None:
                out = self._replay_fresh(out, phase, None)
            return self._emit(out, phase, n, n, times=(time.perf_counter() - t0, 0.0, 0.0))
        pooled = pool[0] if len(pool) == 1 else B.concat_batches(pool, sizes)
        joined = 0
        if self._replay is not None and phase.replay:  # join_pool: memory samples join
            pooled, joined = self._replay.pool_extra(pooled, n, self._keys,
                                                     self.config.pool_factor, self._step,
                                                     self.magnitude.get())
            n += joined
        t1 = time.perf_counter()
        scores, losses, by = self._strategies.score(pooled, self._keys, self._step,
                                                    self._handle)
        t2 = time.perf_counter()
        index = self._choose(scores, k, phase)
        out = B.take(pooled, index, n)
        sel_losses = losses.index_select(0, index)
        sel = sel_losses.mean()
        if self._replay is not None:
            from_memory = (index >= n - joined).cpu() if joined else None
            out = self._replay_fresh(out, phase, sel_losses, from_memory)
        t3 = time.perf_counter()
        return self._emit(out, phase, n, k, losses.mean(), sel, (t1 - t0, t2 - t1, t3 - t2),
                          scored_by=by)

    def _replay_fresh(self, batch: Any, phase: Phase, losses, from_memory=None) -> Any:
        """Store a fresh batch in the replay memory (mode mix: part of it replaced)."""
        return self._replay.fresh(batch, self._keys, losses, phase.replay, self._step,
                                  self.magnitude.get(), from_memory)

    def _replays(self) -> Iterator[Any]:
        """The replay steps owed after a fresh batch (mode steps), each one step."""
        while self._replay is not None and self._replay.pending > 0:
            self._schedules.begin_step(self._step)
            batch = self._replay.next_replay(self._keys, self._step, self.magnitude.get())
            if batch is None:
                return
            n = B.batch_size_of(B.get_field(batch, self._keys[0]))
            yield self._emit(batch, phase_at(self._phases, self._step), n, n)

    def _choose(self, losses: torch.Tensor, k: int, phase: Phase) -> torch.Tensor:
        """Ranked draw; a pool with NaN/inf scores is drawn uniformly instead (no host sync:
        the fallback is a device-side ``where``, and the count a device tensor). Other rules
        go to their selector (:meth:`Strategies.choose`), with the same fallback."""
        if phase.selection != "ranked":
            index, fell_back = self._strategies.choose(losses, k, phase, self._generator)
        else:
            finite = torch.isfinite(losses).all()
            log_w = (self.distributed.log_weights(losses, phase.beta)
                     if self.distributed.is_global else ranked_log_weights(losses, phase.beta))
            log_w = torch.where(finite, log_w, torch.zeros_like(log_w))
            index = _gumbel_top_k(log_w, k, self._generator)
            fell_back = (~finite).to(torch.int64)
        self._fallbacks = self._fallbacks + fell_back
        if _host_reads_cheap(losses.device):
            self._report_fallbacks()
        return index

    def report_losses(self, losses: torch.Tensor) -> None:
        """Optional: the per-sample training losses (``reduction='none'``) of the batch just
        yielded, in its order. The scorer observes them (the ``history`` scorer's table, the
        ``proxy`` scorer's bank); the loop works without it. With ``replay:`` they also
        update the stored losses (EPR priorities) of the batch's replayed samples and of its
        fresh samples the memory kept."""
        self._strategies.report_losses(losses)
        if self._replay is not None:
            self._replay.report_losses(losses)

    def _report_fallbacks(self) -> None:
        total = int(self._fallbacks)
        if total > self._fallbacks_reported:
            msg = (f"smartloader: {total - self._fallbacks_reported} step(s) had NaN or infinite "
                   f"scoring losses and drew their batch uniformly (step {self._step}; "
                   f"{total} in total)")
            logger.warning(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            self._fallbacks_reported = total


def wrap(loader: Iterable, model: torch.nn.Module, config: Any = None, *,
         loss_fn: Callable | None = None, callback: Callable | None = None,
         **overrides: Any) -> SmartLoader:
    """Wrap ``loader`` in a :class:`SmartLoader`: the one line a training loop needs.

    >>> loader = smartloader.wrap(loader, model, "smartloader.yaml", total_steps=10_000)
    """
    return SmartLoader(loader, model, config, loss_fn=loss_fn, callback=callback, **overrides)

"""Where a run is (the cursor), and the strict checks a saved state must pass to load.

The cursor is the position over the run: the step (batches yielded so far), the epoch, how
many wrapped batches the epoch in progress has consumed, the step that epoch started at, and
the selection generator. ``SmartLoader.state_dict()`` nests each stage's state under its own
key next to it (``scoring``, ``selection``, ``transform``, ``replay``), and
``load_state_dict()`` checks every entry before anything is changed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from smartloader.common.state import check_generator_state, check_int, show, strict_keys
from smartloader.errors import StateError

logger = logging.getLogger("smartloader")

__all__ = ["Cursor", "STATE_VERSION", "STATE_KEYS", "CURSOR_KEYS", "STAGE_KEYS", "RUN_KEYS",
           "check_cursor_state", "check_run_state", "is_stateful"]

#: 3: the wrapped loader's own state (``loader``) and the process layout (``world_size``,
#: ``rank``) joined the state
STATE_VERSION = 3
#: the cursor's entries, then the stages' nested states, then the config
CURSOR_KEYS = ("step", "epoch", "consumed", "epoch_start_step", "generator",
               "generator_device", "short_pools")
STAGE_KEYS = ("scoring", "selection", "transform", "replay")
#: the wrapped loader's state (``None`` when it has none) and where the state was taken
RUN_KEYS = ("loader", "world_size", "rank")
STATE_KEYS = frozenset(("version", "config") + CURSOR_KEYS + STAGE_KEYS + RUN_KEYS)


@dataclass
class Cursor:
    """The run's position; ``SmartLoader`` owns one."""

    step: int = 0                 #: batches yielded over the run
    epoch: int = 0                #: the epoch in progress, or the next one between epochs
    consumed: int = 0             #: wrapped batches the epoch in progress has read
    epoch_start_step: int = 0     #: the step the epoch in progress started at
    short_pools: int = 0          #: end-of-epoch pools with fewer than pool_factor batches
    active: bool = False          #: an iterator is running (guards load_state_dict)
    mid_epoch: bool = False       #: the consumer holds batches of an unfinished epoch
    token: int = 0                #: the newest iterator; older ones fail on their next batch
    #: a loaded mid-epoch position, applied when the next iterator starts that epoch
    resume: dict | None = None
    generator: torch.Generator | None = field(default=None, repr=False)
    #: the phase of the last pool (a cache: phase_at runs only when a step leaves it)
    phase: Any = field(default=None, repr=False)
    #: the numbers of the last yielded batch, as ``emit.emit`` kept them (``loader.stats``)
    last: tuple | None = field(default=None, repr=False)
    #: a loaded state of the wrapped loader, handed to it when the next iterator starts
    loader_state: Any = field(default=None, repr=False)

    def generator_on(self, device: torch.device) -> torch.Generator:
        """The selection generator, on ``device`` (made anew when the model moved)."""
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device)
        return self.generator

    def state_dict(self) -> dict[str, Any]:
        if self.resume is not None:  # loaded, not yet resumed: hand the position on
            r = self.resume
            return {"step": self.step, "epoch": r["epoch"], "consumed": r["consumed"],
                    "epoch_start_step": r["epoch_start_step"], "generator": r["generator"],
                    "generator_device": r["generator_device"], "short_pools": self.short_pools}
        mid = self.mid_epoch and self.consumed > 0
        gen = self.generator
        return {"step": self.step, "epoch": self.epoch,
                "consumed": self.consumed if mid else 0,
                "epoch_start_step": self.epoch_start_step if mid else self.step,
                "generator": gen.get_state() if (mid and gen is not None) else None,
                "generator_device": str(gen.device) if gen is not None else None,
                "short_pools": self.short_pools}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the cursor entries of ``state`` (other keys are ignored: the loader's)."""
        check_cursor_state(state)
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.short_pools = state["short_pools"]
        self.mid_epoch = False
        self.resume = None
        self.phase = self.last = None
        if state["consumed"] > 0:
            self.resume = {k: state[k] for k in ("epoch", "consumed", "epoch_start_step",
                                                 "generator", "generator_device")}
            self.resume["generator"] = state["generator"].cpu()


def is_stateful(loader: Any) -> bool:
    """Whether ``loader`` keeps its own position (``state_dict()`` and ``load_state_dict()``,
    as torchdata's ``StatefulDataLoader``): then SmartLoader nests its state and restores it
    on resume instead of re-reading the consumed batches."""
    if not (callable(getattr(loader, "state_dict", None))
            and callable(getattr(loader, "load_state_dict", None))):
        return False
    # accelerate's prepared loaders always have the methods, but keep a state only when
    # prepared with use_stateful_dataloader=True (over a StatefulDataLoader)
    return bool(getattr(loader, "use_stateful_dataloader", True))


def check_run_state(state: Mapping[str, Any], loader: Any, rank: int, size: int) -> None:
    """The process layout (``world_size``, ``rank``) and the wrapped loader's state of a
    saved ``state``, against this process's ``rank`` of ``size`` and the wrapped ``loader``;
    raises :class:`StateError` naming the entry, changes nothing."""
    saved_size = check_int(state["world_size"], "state.world_size", minimum=1)
    saved_rank = check_int(state["rank"], "state.rank", maximum=saved_size - 1)
    if saved_size != size:
        raise StateError(
            f"state.world_size: saved with {saved_size} process(es), this run has {size}. "
            f"Each rank's state holds its own shard's position, so a state resumes only "
            f"with the same number of processes: relaunch with {saved_size} processes, or "
            f"start the data pipeline afresh (load the model and optimizer only)")
    if saved_rank != rank:
        raise StateError(
            f"state.rank: this is rank {rank}, the state was saved by rank {saved_rank}. "
            f"Every rank saves and loads its own state (e.g. "
            f"torch.save(loader.state_dict(), f'loader_{{rank}}.pt')); a state saved by "
            f"one rank only, or stored under one key for all ranks, cannot resume the "
            f"others")
    inner = state["loader"]
    if inner is not None and not is_stateful(loader):
        raise StateError(
            f"state.loader: the state holds the wrapped loader's own state (saved around "
            f"a loader with state_dict()/load_state_dict(), such as a StatefulDataLoader), "
            f"but the wrapped {type(loader).__name__} has no load_state_dict(); wrap "
            f"the same kind of loader to resume")
    if inner is None and is_stateful(loader) and state["consumed"] > 0:
        logger.info("state.loader is None (saved around a loader without state): the "
                    "wrapped %s re-reads the %d consumed batches of epoch %d",
                    type(loader).__name__, state["consumed"], state["epoch"])


def check_cursor_state(state: Mapping[str, Any], path: str = "state") -> None:
    """Type and range of every cursor entry of ``state`` (a mapping holding at least
    :data:`CURSOR_KEYS`); raises :class:`StateError` naming the key, changes nothing."""
    # the cursor's entries share the top level with the loader's: check just those keys
    strict_keys(None, {k: state[k] for k in state if k in CURSOR_KEYS}
                if isinstance(state, Mapping) else state, CURSOR_KEYS, path)
    step = check_int(state["step"], f"{path}.step")
    check_int(state["epoch"], f"{path}.epoch")
    consumed = check_int(state["consumed"], f"{path}.consumed")
    start = check_int(state["epoch_start_step"], f"{path}.epoch_start_step")
    check_int(state["short_pools"], f"{path}.short_pools")
    if start > step:
        raise StateError(f"{path}.epoch_start_step: must be <= {path}.step ({step}), got "
                         f"{start}: the epoch would start after the step it is at")
    device = state["generator_device"]
    if device is not None:
        if not isinstance(device, str):
            raise StateError(f"{path}.generator_device: must be None or a device name, got "
                             f"{show(device)}")
        try:
            torch.device(device)
        except RuntimeError:
            raise StateError(f"{path}.generator_device: must be a device name, got "
                             f"{device!r}, which is not a device") from None
    gen = state["generator"]
    if gen is None:
        if consumed > 0:
            raise StateError(f"{path}.generator: a state saved mid-epoch ({path}.consumed "
                             f"{consumed}) needs the generator state, got None")
        return
    if device is None:
        raise StateError(f"{path}.generator_device: must name the device of "
                         f"{path}.generator, got None")
    check_generator_state(gen, f"{path}.generator", device)

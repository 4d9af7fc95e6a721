"""SmartLoader in a ``torch.distributed.checkpoint`` (DCP) checkpoint.

DCP treats every entry of a state dict as one value replicated or sharded over the ranks: it
keeps one copy of each key, and it loads into a template of the same shape. A SmartLoader's
state is neither: each rank's is its own (its shard's position, its generator), and its shape
changes as the run goes (a replay memory fills, a generator state appears mid-epoch). So
:class:`CheckpointState` (``loader.checkpoint``) hands DCP one opaque entry per rank,
``rank<r>``, holding that rank's :meth:`~smartloader.SmartLoader.state_dict` serialised with
``torch.save``, next to the world size it was saved with::

    dcp.save({"model": model.state_dict(), "loader": loader.checkpoint}, checkpoint_id=path)
    dcp.load({"model": model.state_dict(), "loader": loader.checkpoint}, checkpoint_id=path)

The entry is loaded through :meth:`~smartloader.SmartLoader.load_state_dict`, with all its
checks.
"""
from __future__ import annotations

import io
from typing import Any, Mapping

import torch

from smartloader.errors import StateError
from smartloader.pipeline.distributed import world

__all__ = ["CheckpointState"]


class CheckpointState:
    """A ``torch.distributed.checkpoint`` ``Stateful`` for one rank's SmartLoader."""

    def __init__(self, loader: Any):
        self.loader = loader

    def state_dict(self) -> dict[str, Any]:
        rank, size = world()
        buf = io.BytesIO()
        torch.save(self.loader.state_dict(), buf)
        return {f"rank{rank}": buf.getvalue(), "world_size": size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        rank, size = world()
        if not (isinstance(state, Mapping) and "world_size" in state and all(
                k == "world_size" or (isinstance(k, str) and k[:4] == "rank" and k[4:].isdigit())
                for k in state)):
            what = ("a SmartLoader.state_dict() (load it with loader.load_state_dict)"
                    if isinstance(state, Mapping) and "version" in state
                    else type(state).__name__)
            raise StateError(f"loader.checkpoint: expected the entry saved from "
                             f"loader.checkpoint (keys rank<r> and world_size), got {what}")
        saved = state["world_size"]
        if saved != size:
            raise StateError(f"loader.checkpoint: saved with world_size {saved}, this run has "
                             f"{size}; each rank's state holds its own shard's position, so "
                             f"relaunch with {saved} processes or start the data pipeline "
                             f"afresh")
        blob = state.get(f"rank{rank}")
        if not isinstance(blob, (bytes, bytearray)):
            raise StateError(f"loader.checkpoint: the checkpoint has no state for rank {rank} "
                             f"(keys {sorted(k for k in state if k != 'world_size')})")
        self.loader.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))

"""Prioritized replay memory for one-pass training (OPIN; ALGORITHMS.md §2, docs/replay.md).

Pure functions: :func:`epr_priority`, :func:`importance_weights`, :func:`alpha_at`,
:func:`capacity_from`, :func:`reservoir_slots`, :func:`replay_plan`. Classes:
:class:`ReplayMemory` (the records), :class:`ReplayScheduler` (fresh or replay, per step),
:class:`ReplayConfig` (from YAML via :func:`parse_replay`).
"""
from smartloader.replay.config import ReplayConfig, parse_replay
from smartloader.replay.memory import (OVERHEAD_BYTES_PER_SLOT, ReplayMemory, capacity_from,
                                       fifo_slots, last_writer, reservoir_slots)
from smartloader.replay.priority import (MIN_PRIORITY, AlphaSchedule, alpha_at, epr_priority,
                                         importance_weights)
from smartloader.replay.schedule import ReplayPlan, ReplayScheduler, replay_plan

__all__ = [
    "AlphaSchedule", "MIN_PRIORITY", "OVERHEAD_BYTES_PER_SLOT", "ReplayConfig", "ReplayMemory",
    "ReplayPlan", "ReplayScheduler", "alpha_at", "capacity_from", "epr_priority", "fifo_slots",
    "importance_weights", "last_writer", "parse_replay", "replay_plan", "reservoir_slots",
]

"""Optional adapters for fast loaders (FFCV, NVIDIA DALI).

Only :mod:`.capabilities` is imported here; ``smartloader.adapters.ffcv`` and
``smartloader.adapters.dali`` import their library when *they* are imported, so
``import smartloader`` never needs ffcv or nvidia-dali. Install both with
``adapters/install.sh``.
"""
from smartloader.pipeline.capabilities import (LEVELS, Capabilities, change_level,
                                               check_capabilities, check_loader,
                                               loader_batch_steps, on_wrap, planned_change)

__all__ = ["LEVELS", "Capabilities", "change_level", "check_capabilities", "check_loader",
           "loader_batch_steps", "on_wrap", "planned_change"]

"""One selection step as a chain of stages: score -> guard -> choose -> take -> replay.

:class:`SelectionStep` turns a pool of wrapped batches into the batch to train on. Each
stage lives in its own package and is always present (a stage that is off is a no-op):

========== ======================================= =========================================
stage      what it does                            where
========== ======================================= =========================================
score      scorer's scores, or the scoring forward :class:`~smartloader.scoring.stage.ScoringStage`
guard      caps scores of always-extreme samples   (same; ``noisy_guard:``)
choose     the phase's rule; NaN pools -> uniform  :class:`~smartloader.selection.choose.Chooser`
take       every per-sample field subset together  :func:`~smartloader.common.batch.take`
replay     memory in / out (``replay:``)           :mod:`smartloader.replay.stage`
========== ======================================= =========================================

The transform stages (MixUp/CutMix, the resolution schedule's resize) run on every yielded
batch, uniform ones too, in :func:`smartloader.pipeline.emit.emit`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from smartloader.common import batch as B

__all__ = ["SelectionStep", "Selected", "host_reads_cheap"]


def host_reads_cheap(device: torch.device) -> bool:
    """Whether reading a tensor on ``device`` from the host costs nothing (CPU: it is there).

    Only then is the NaN-fallback counter read every step (to warn at once); on an
    accelerator it stays a device tensor, read at the end of the epoch, by ``state_dict()``
    and by ``loader.stats``. The host-read tests patch this to ``False`` to run, on the CPU,
    exactly the code path a GPU runs.
    """
    return device.type == "cpu"


@dataclass
class Selected:
    """The chosen batch and the numbers ``StepStats`` reports for it."""

    batch: Any
    pool_size: int | None   #: None: a pass-through batch, sized when its stats are read
    size: int | None
    pool_loss: Any = None
    selected_loss: Any = None
    times: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scored_by: str | None = None


class SelectionStep:
    """The stages of a selection step, built once per loader.

    Args:
        handle: the model's side-effect-free forward (:class:`~smartloader.scoring.ModelHandle`).
        scoring, chooser, replay: the stages.
        distributed: the collectives (a lone last batch still joins a global gather).
        pool_factor: wrapped batches per pool (``join_pool`` replay adds ``n // pool_factor``).
    """

    def __init__(self, handle: Any, scoring: Any, chooser: Any, replay: Any,
                 distributed: Any, pool_factor: int) -> None:
        self.handle = handle
        self.scoring = scoring
        self.chooser = chooser
        self.replay = replay
        self.distributed = distributed
        self.pool_factor = pool_factor

    def __call__(self, pool: list, sizes: list[int], phase: Any, k: int, keys: tuple,
                 step: int, generator: torch.Generator, magnitude: Any) -> Selected:
        t0 = time.perf_counter()
        n = sum(sizes)
        pooled = pool[0] if len(pool) == 1 else B.concat_batches(pool, sizes)
        if n <= k:  # a short last pool: nothing to choose from
            self.distributed.skip()
            out = self.replay.fresh(pooled, keys, None, phase.replay, step, magnitude)
            return Selected(out, n, n, times=(time.perf_counter() - t0, 0.0, 0.0))
        joined = 0
        if phase.replay:  # join_pool: memory samples join the pool
            pooled, joined = self.replay.pool_extra(pooled, n, keys, self.pool_factor, step,
                                                    magnitude)
            n += joined
        t1 = time.perf_counter()
        scores, losses, by = self.scoring.score(pooled, keys, step, self.handle)
        t2 = time.perf_counter()
        index = self.chooser.choose(scores, k, phase, generator)
        out = B.take(pooled, index, n)
        sel_losses = losses.index_select(0, index)
        from_memory = (index >= n - joined).cpu() if joined else None  # host read: join_pool
        out = self.replay.fresh(out, keys, sel_losses, phase.replay, step, magnitude,
                                from_memory)
        t3 = time.perf_counter()
        return Selected(out, n, k, losses.mean(), sel_losses.mean(),
                        (t1 - t0, t2 - t1, t3 - t2), by)

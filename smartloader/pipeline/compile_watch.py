"""Recompiles of a ``torch.compile``'d model, counted at every yielded batch.

:class:`CompileWatch` reads how many graphs dynamo holds for the model's forward
(:func:`~smartloader.scoring.compiled.compiled_graphs`, ``StepStats.compiled_graphs``),
remembers the input shapes SmartLoader fed it (the yielded batches, which the training loop
runs, and the pools it scored), and warns once when the count exceeds the planned shapes
(:meth:`SmartLoader.planned_shapes <smartloader.SmartLoader.planned_shapes>`), naming the
shapes outside the plan and the fix. Reading the count is one call into dynamo's C cache,
made only for a compiled model.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Sequence

import torch

from smartloader.config.shapes import PlannedShape
from smartloader.scoring.compiled import compiled_code, compiled_graphs, recompile_limit

__all__ = ["CompileWatch", "epoch_layout"]

logger = logging.getLogger("smartloader")


def epoch_layout(loader: Any, batch_size: int) -> tuple[int | None, int | None]:
    """``(batches per epoch, samples in the last batch)`` of a wrapped loader where it says
    (a ``DataLoader``: ``len()``, its sampler's length and ``drop_last``); ``None`` where not
    known (the last batch is then planned as a full one)."""
    try:
        batches = len(loader)
    except TypeError:
        return None, None
    sampler = getattr(loader, "sampler", None)
    drop_last = getattr(loader, "drop_last", None)
    if drop_last is None or sampler is None or drop_last:
        return batches, None
    try:
        samples = len(sampler)
    except TypeError:
        return batches, None
    last = samples - (batches - 1) * batch_size
    return batches, last if 0 < last < batch_size else None


class CompileWatch:
    """The model's compiled-graph count at each step, and one warning past the plan.

    Args:
        model: the training model; the watch is off (counts ``None``) unless it is compiled.
        plan: returns the planned shapes (called at the first step and before warning).
    """

    def __init__(self, model: torch.nn.Module, plan: Callable[[], list[PlannedShape]]):
        self.model = model
        self.active = compiled_code(model) is not None
        self._plan = plan
        self.planned: list[PlannedShape] | None = None
        #: (role, input shape) -> first step SmartLoader fed it
        self.seen: dict[tuple[str, tuple[int, ...]], int] = {}
        self.warned = False
        self.warned_limit = False

    def observe(self, step: int, train_input: Any, score_shape: Sequence[int] | None
                ) -> int | None:
        """Record this step's shapes; the graph count now (``None``: not compiled)."""
        if not self.active:
            return None
        if isinstance(train_input, torch.Tensor):
            self.seen.setdefault(("train", tuple(train_input.shape)), step)
        if score_shape is not None:
            self.seen.setdefault(("score", tuple(score_shape)), step)
        n = compiled_graphs(self.model)
        if n is None:
            return None
        if self.planned is None:
            self.planned = self._safe_plan()
        if not self.warned and self.planned is not None and n > len(self.planned):
            self.planned = self._safe_plan()   # auto's sizes are probed as sides come
            if self.planned is not None and n > len(self.planned):
                self.warned = True
                self._warn(n, step)
        if not self.warned_limit and n >= recompile_limit():
            self.warned_limit = True
            self._say(f"smartloader: torch.compile reached torch._dynamo.config."
                      f"recompile_limit ({n} graphs for {self._name()}): dynamo runs any "
                      f"further input signature eagerly. Raise the limit "
                      f"(torch._dynamo.config.recompile_limit = N) above the planned "
                      f"{len(self.planned or ())} shapes, or plan fewer (fewer resolution "
                      f"stages, drop_last=True)")
        return n

    def unplanned(self) -> list[tuple[str, tuple[int, ...], int]]:
        """``(role, shape, first step)`` of the shapes fed that no planned shape matches."""
        plan = self.planned or []
        return [(role, shape, step) for (role, shape), step in self.seen.items()
                if not any(p.matches(role, shape) for p in plan)]

    def _safe_plan(self) -> list[PlannedShape] | None:
        try:
            return self._plan()
        except ValueError as exc:  # no batch size: nothing to compare with
            logger.info("smartloader: no planned shapes to compare the compiled graphs "
                        "with (%s)", exc)
            return None

    def _name(self) -> str:
        from smartloader.scoring.compiled import eager_module
        inner = eager_module(self.model)
        inner = getattr(inner, "__self__", inner)
        return f"{type(inner).__name__}.forward"

    def _warn(self, n: int, step: int) -> None:
        plan = self.planned or []
        planned = "; ".join(p.describe() for p in plan)
        new = self.unplanned()
        if new:
            what = "; ".join(f"{role} {list(shape)} (first at step {s})"
                             for role, shape, s in new)
            fixes = _fixes(new, plan)
        else:
            what = "none of the shapes SmartLoader fed"
            fixes = ("the extra graphs come from calls outside SmartLoader (an evaluation "
                     "loop, another compiled instance of the same class) or from a guard on "
                     "something other than the shape (a module flag, requires_grad, a Python "
                     "value); TORCH_LOGS=recompiles names the failing guard")
        self._say(f"smartloader: torch.compile holds {n} graphs for {self._name()} at step "
                  f"{step}, more than the {len(plan)} planned input shapes [{planned}]; "
                  f"unplanned: {what}. Fix: {fixes}")

    @staticmethod
    def _say(msg: str) -> None:
        logger.warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


def _fixes(new: list[tuple[str, tuple[int, ...], int]], plan: list[PlannedShape]) -> str:
    batches = {p.batch for p in plan}
    sizes = {p.size for p in plan}
    out = []
    if None not in batches and any(shape[0] not in batches for _, shape, _ in new):
        out.append("a batch size outside the plan (a short last batch or pool): "
                   "drop_last=True on the wrapped DataLoader, or mark the batch dimension "
                   "dynamic (torch._dynamo.mark_dynamic(inputs, 0), or "
                   "torch.compile(model, dynamic=True))")
    if None not in sizes and any(tuple(shape[-2:]) not in sizes for _, shape, _ in new):
        out.append("an image size outside the plan: load batches at the size the plan "
                   "assumes (the resolution schedule's max) or add the side to the "
                   "schedule's planned sizes (resolution min/max/increment)")
    return "; ".join(out) or "pass the shapes to smartloader.integrations.compile.prewarm"

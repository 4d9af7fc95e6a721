"""The choose stage: one selector per selecting phase, and the NaN fallback in one place.

A pool whose scores hold any NaN or infinity is drawn uniformly instead, decided on the
device (``torch.where``) so nothing waits for an accelerator, and counted in a device tensor
that the loader reads only where reading is free (the CPU) or at the end of an epoch.

- Rules with log-weights (``ranked``): one Gumbel-top-k draw over the weights, or over zeros
  (uniform) when the pool is not finite.
- Other rules (``topk``, ``selective_backprop``): the selector runs on the pool with every
  score replaced by +inf when it is not finite (so a Selective-Backprop window records nothing
  from it), a uniform draw follows from the same generator, and ``torch.where`` keeps one.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from smartloader.common.state import check_int, strict_keys
from smartloader.selection.ranked import gumbel_top_k
from smartloader.selection.rules import RankedSelector, SelectiveBackprop, Selector, TopKSelector

__all__ = ["Chooser", "selector_for"]


def selector_for(phase: Any, log_weights: Callable | None = None) -> Selector:
    """The selector a resolved phase names (``ranked``, ``topk``, ``selective_backprop``)."""
    if phase.selection == "ranked":
        return RankedSelector(phase.beta, log_weights)
    if phase.selection == "topk":
        return TopKSelector()
    if phase.selection == "selective_backprop":
        return (SelectiveBackprop(phase.beta) if phase.window is None
                else SelectiveBackprop(phase.beta, phase.window))
    raise ValueError(f"phase {phase.name!r}: selection {phase.selection!r} does not select")


class Chooser:
    """Indices of the batch to train on, from a scored pool, by the phase's rule.

    Args:
        phases: the resolved phases; each selecting phase gets its own selector (so a
            Selective-Backprop window belongs to its phase).
        log_weights: ``(scores, beta) -> log-weights`` for the ranked rule (global selection
            under torch.distributed); ``None`` ranks within the pool.
    """

    def __init__(self, phases: Sequence[Any], log_weights: Callable | None = None) -> None:
        self.selectors: dict[str, Selector] = {
            p.name: selector_for(p, log_weights) for p in phases if p.selects}
        #: pools drawn uniformly because of non-finite scores: an int, or a 0-d device tensor
        self.fallbacks: torch.Tensor | int = 0

    def choose(self, scores: torch.Tensor, k: int, phase: Any,
               generator: torch.Generator) -> torch.Tensor:
        """``k`` sorted unique indices into the pool; counts a non-finite pool's fallback."""
        selector = self.selectors[phase.name]
        finite = torch.isfinite(scores).all()
        if hasattr(selector, "log_weights"):
            log_w = selector.log_weights(scores)
            log_w = torch.where(finite, log_w, torch.zeros_like(log_w))
            index = gumbel_top_k(log_w, k, generator)
        else:
            safe = torch.where(finite, scores, torch.full_like(scores, float("inf")))
            selected = selector.select(safe, k, generator)
            uniform = gumbel_top_k(torch.zeros(scores.shape[0], device=scores.device), k,
                                   generator)
            index = torch.where(finite, selected, uniform)
        self.fallbacks = self.fallbacks + (~finite).to(torch.int64)
        return index

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"selectors": {n: s.state_dict() for n, s in self.selectors.items()},
                "fallbacks": int(self.fallbacks)}

    def check_state(self, state: Any, path: str = "state.selection") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, {"selectors", "fallbacks"}, path)
        check_int(state["fallbacks"], f"{path}.fallbacks")
        # one entry per selecting phase of this config
        strict_keys(self, state["selectors"], set(self.selectors), f"{path}.selectors")
        for name, sel in self.selectors.items():
            sel.check_state(state["selectors"][name], f"{path}.selectors.{name}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        for name, sel in self.selectors.items():
            sel.load_state_dict(state["selectors"][name])
        self.fallbacks = state["fallbacks"]

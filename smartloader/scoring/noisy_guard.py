"""Noisy-label guard: stop selection from chasing samples whose loss never comes down.

Loss-based selection prefers high-loss samples, and a mislabelled sample keeps a high loss
however long it is trained on, so selection draws it again and again. The thesis reports this
as a known limitation (Ch. 4: Food-101, whose labels are noisy, gains only x1.3 instead of
x1.4-1.7; ``../shared/ALGORITHMS.md`` §1). The guard is our addition, in the spirit of the
small-loss criterion of Co-teaching (Han et al. 2018): a sample whose score is above the
``percentile`` (default 0.95) of its pool on ``patience`` (default 3) *consecutive*
appearances is flagged, and while flagged its score is lowered to the pool median
(``cap_to: median``, default), so the ranked rule gives it a middling weight (about
``0.5 ** beta``, roughly the uniform rate) instead of the top weight; ``cap_to: min`` lowers
it to the pool minimum (weight about ``(1/n) ** beta``, nearly never chosen). It is not
removed: a hard but correctly labelled sample that the model then learns drops below the
percentile, its streak resets and the flag clears. The guard works when noise is rarer than
``1 - percentile`` of a pool; with more noisy samples than that, they push each other out
of the extreme tail and their streaks keep resetting.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common.readers import as_float, as_int, as_str, check_keys, join, require_mapping

__all__ = ["flag_extreme", "NoisyLabelGuard", "build_noisy_guard"]


def flag_extreme(losses: torch.Tensor, percentile: float = 0.95) -> torch.Tensor:
    """``BoolTensor[n]``: losses strictly above the ``percentile`` quantile of ``losses``.

    The quantile interpolates linearly (``torch.quantile``); strict ``>`` means a pool of
    equal losses flags nothing. Non-finite losses are never flagged.
    """
    if losses.dim() != 1:
        raise ValueError(f"losses must be 1-D, got shape {tuple(losses.shape)}")
    if not 0.0 <= percentile <= 1.0:
        raise ValueError(f"percentile must be in [0, 1], got {percentile!r}")
    finite = torch.isfinite(losses)
    if not bool(finite.any()):
        return torch.zeros_like(finite)
    q = torch.quantile(losses[finite].float(), percentile)
    return finite & (losses.float() > q)


class NoisyLabelGuard:
    """Flags samples that are extreme in their pool ``patience`` times in a row.

    ``apply(sample_ids, scores) -> scores``: call it on each scored pool, before selection.
    Per sample id it keeps the current streak of consecutive extreme appearances (a growing
    ``int32`` table on the CPU, in :meth:`state_dict`). :attr:`num_flagged` counts the ids
    flagged now; :attr:`last_capped` how many scores the last call lowered.
    """

    def __init__(self, percentile: float = 0.95, patience: int = 3,
                 cap_to: str = "median") -> None:
        if not 0.0 < percentile < 1.0:
            raise ValueError(f"percentile must be in (0, 1), got {percentile!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        if cap_to not in ("median", "min"):
            raise ValueError(f"cap_to must be 'median' or 'min', got {cap_to!r}")
        self.cap_to = cap_to
        self.percentile, self.patience = float(percentile), int(patience)
        self._streak = torch.zeros(0, dtype=torch.int32)
        self.last_capped = 0

    @property
    def num_flagged(self) -> int:
        """How many sample ids are flagged now."""
        return int((self._streak >= self.patience).sum())

    def flagged(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """``BoolTensor`` (CPU): which of ``sample_ids`` are flagged now."""
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu().long()
        out = torch.zeros(ids.numel(), dtype=torch.bool)
        inside = ids < self._streak.numel()
        out[inside] = self._streak[ids[inside]] >= self.patience
        return out

    def apply(self, sample_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        """Update the streaks with this pool and return scores with flagged ones capped."""
        if sample_ids is None:
            raise ValueError("noisy-label guard: sample_ids is None; the guard tracks samples "
                             "across pools by dataset index, so the data must provide ids")
        ids = torch.as_tensor(sample_ids).reshape(-1).cpu().long()
        if ids.numel() != scores.shape[0]:
            raise ValueError(f"noisy-label guard: {ids.numel()} ids for {scores.shape[0]} scores")
        need = int(ids.max()) + 1 if ids.numel() else 0
        if need > self._streak.numel():
            grown = torch.zeros(max(need, 2 * self._streak.numel()), dtype=torch.int32)
            grown[: self._streak.numel()] = self._streak
            self._streak = grown
        extreme = flag_extreme(scores, self.percentile).cpu()
        self._streak[ids] = torch.where(extreme, self._streak[ids] + 1,
                                        torch.zeros_like(self._streak[ids]))
        capped = (self._streak[ids] >= self.patience).to(scores.device)
        self.last_capped = int(capped.sum())
        if self.last_capped == 0:
            return scores
        finite = scores[torch.isfinite(scores)]
        level = finite.median() if self.cap_to == "median" else finite.min()
        return torch.where(capped, torch.minimum(scores, level), scores)

    def state_dict(self) -> dict[str, Any]:
        return {"streak": self._streak.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state) != {"streak"}:
            raise ValueError(f"NoisyLabelGuard.load_state_dict: expected keys ['streak'], "
                             f"got {sorted(state)}")
        self._streak = torch.as_tensor(state["streak"], dtype=torch.int32).clone()


def build_noisy_guard(mapping: Any, path: str = "noisy_guard") -> NoisyLabelGuard:
    """``{percentile: 0.95, patience: 3, cap_to: median}``; errors name the key path."""
    m = require_mapping(mapping, path)
    check_keys(m, ["percentile", "patience", "cap_to"], path)
    percentile = as_float(m.get("percentile", 0.95), join(path, "percentile"), minimum=0.0,
                          maximum=1.0, min_exclusive=True, max_exclusive=True)
    patience = as_int(m.get("patience", 3), join(path, "patience"), minimum=1)
    cap_to = as_str(m.get("cap_to", "median"), join(path, "cap_to"), choices=["median", "min"])
    return NoisyLabelGuard(percentile, patience, cap_to)

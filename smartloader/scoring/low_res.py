"""``{type: low_res_loss}``: score the pool with the live model at low resolution.

This is the thesis' scorer (Ch. 4, ``../shared/ALGORITHMS.md`` §1, steps 2-3): the loss of a
no-grad forward of the pool downsampled to ``score_resolution``. The forward itself belongs to
the loader (it owns the model handle, the resolution and the loss); this class only marks the
choice, so :meth:`score` always answers ``None`` ("run the forward").
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common.readers import check_keys
from smartloader.common.state import strict_keys


class LowResLossScorer:
    """Marker scorer: every step needs the loader's low-resolution forward. Stateless."""

    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> None:
        return None

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None:
        pass

    def reset_epoch(self, epoch: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        strict_keys(self, state, set())


def build_low_res_scorer(mapping: Mapping[str, Any], path: str) -> LowResLossScorer:
    check_keys(mapping, ["type"], path)
    return LowResLossScorer()

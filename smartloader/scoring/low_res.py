"""``{type: low_res_loss}``: score the pool with the live model at low resolution.

This is the thesis' scorer (Ch. 4, fast online minibatch selection): the loss of a
no-grad forward of the pool downsampled to ``score_resolution``. The forward itself belongs to
the loader (it owns the model handle, the resolution and the loss); this class only marks the
choice, so :meth:`score` always answers ``None`` ("run the forward").
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common.spec import Section
from smartloader.common.state import Stateless


class LowResLossScorer(Stateless):
    """Marker scorer: every step needs the loader's low-resolution forward. Stateless."""

    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> None:
        return None

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None:
        pass

    def reset_epoch(self, epoch: int) -> None:
        pass



#: ``{type: low_res_loss}`` has no other keys.
LOW_RES = Section("low_res_loss", (), doc="the low-resolution forward of the live model")


def make_low_res_scorer(values: Mapping[str, Any]) -> LowResLossScorer:
    return LowResLossScorer()

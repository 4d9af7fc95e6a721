"""Replay priorities and importance weights (OPIN, ALGORITHMS.md §2).

Pure functions a user can paste into their own loop:

* :func:`epr_priority` -- error-based priority ``P = 1 - alpha * exp(-loss)``;
* :func:`importance_weights` -- ``w_i = (1/P_i) / mean_j(1/P_j)`` over the drawn samples;
* :func:`alpha_at` -- the alpha decay schedule as a pure function of the fraction of training.

:class:`AlphaSchedule` is the thin frozen value the YAML builds; it holds no state, so it resumes
for free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from smartloader.common.progress import Progress

#: Smallest priority :func:`epr_priority` returns. With ``alpha = 1`` a sample the model fits
#: perfectly (loss 0) would get priority 0: it could never be drawn again and its importance
#: weight ``1/P`` would be infinite. Flooring at 1e-3 keeps every stored sample reachable and
#: bounds the ratio between two importance weights by 1000.
MIN_PRIORITY = 1e-3

DECAYS = ("constant", "linear", "cosine")


def epr_priority(losses: torch.Tensor, alpha: float, floor: float = MIN_PRIORITY) -> torch.Tensor:
    """Error-based priority ``P = max(1 - alpha * exp(-loss), floor)`` (OPIN's EPR).

    ``losses`` are per-sample losses (>= 0 for cross-entropy), any shape; the result has the
    same shape and dtype. ``alpha`` in [0, 1]: 0 gives uniform priority 1 for every sample,
    1 makes priority grow fastest with the loss (``P ~ loss`` for small losses). A loss of
    ``+inf`` -- how :class:`~smartloader.replay.ReplayMemory` stores "not known yet" -- gives the
    maximum priority 1, so new samples are seen at least as often as any other.

    >>> epr_priority(torch.tensor([0.0, math.log(2.0), float("inf")]), alpha=0.5)
    tensor([0.5000, 0.7500, 1.0000])
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return (1.0 - alpha * torch.exp(-losses)).clamp_min(floor)


def importance_weights(priorities: torch.Tensor) -> torch.Tensor:
    """Normalised importance weights ``w_i = (1/P_i) / mean_j(1/P_j)`` for drawn samples.

    ``priorities`` holds the priority of each *drawn* sample (1-D, all > 0). Drawing with
    probability ``q ∝ P`` changes the data distribution; weighting each drawn sample's loss by
    ``w ∝ 1/P`` undoes that in expectation (OPIN: ``E_q[w·loss] = E_p[loss]``). Normalising to
    mean 1 over the batch keeps the loss scale -- and so the learning rate -- unchanged; equal
    priorities give weights of exactly 1. (Drawing *without* replacement makes ``q`` only
    approximately proportional to ``P``; the weights ignore that, as OPIN does.)

    >>> importance_weights(torch.tensor([1.0, 0.5]))
    tensor([0.6667, 1.3333])
    """
    if priorities.ndim != 1 or priorities.numel() == 0:
        raise ValueError(f"priorities must be a non-empty 1-D tensor, got shape {tuple(priorities.shape)}")
    inverse = priorities.reciprocal()
    return inverse / inverse.mean()


def alpha_at(fraction: float, start: float, end: float, decay: str = "linear") -> float:
    """Alpha at ``fraction`` in [0, 1] of training.

    ``constant``: always ``start``. ``linear``: ``start + (end - start) * fraction``.
    ``cosine``: ``end + (start - end) * (1 + cos(pi * fraction)) / 2`` -- stays near ``start``
    early and near ``end`` late. Both decays equal ``start`` at 0 and ``end`` at 1.
    """
    if decay == "constant":
        return start
    fraction = min(1.0, max(0.0, fraction))
    if decay == "linear":
        return start + (end - start) * fraction
    if decay == "cosine":
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * fraction))
    raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {decay!r}")


@dataclass(frozen=True)
class AlphaSchedule:
    """EPR's alpha as a pure function of training progress.

    ``AlphaSchedule(0.5)`` is constant 0.5 (needs no progress). ``AlphaSchedule(1.0, 0.0,
    "linear")`` -- the YAML default for ``priority: {type: epr}`` -- starts by favouring
    high-loss samples strongly and ends uniform, so the end of training sees the memory
    as the data distribution. That default is ours: OPIN says alpha is decayed but does not
    publish the schedule.
    """

    start: float
    end: float | None = None
    decay: str = "constant"

    def __post_init__(self) -> None:
        if self.decay not in DECAYS:
            raise ValueError(f"decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        end = self.start if self.end is None else self.end
        for name, value in (("start", self.start), ("end", end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"alpha {name} must be in [0, 1], got {value!r}")
        if self.decay == "constant" and end != self.start:
            raise ValueError("a constant alpha schedule must have end == start")
        object.__setattr__(self, "end", end)

    @property
    def is_constant(self) -> bool:
        """True when alpha never changes, so no progress is needed to evaluate it."""
        return self.decay == "constant" or self.start == self.end

    def __call__(self, progress: Progress | None = None) -> float:
        """Alpha at ``progress``; ``progress`` (with ``total_steps``) is needed unless constant."""
        if self.is_constant:
            return self.start
        if progress is None:
            raise ValueError("a decaying alpha schedule needs progress (with total_steps)")
        return alpha_at(progress.fraction, self.start, self.end, self.decay)

"""Scoring: per-sample scores for a pool, without side effects on the model.

:class:`ModelHandle` runs the side-effect-free forward (no grad, eval mode, flags restored);
the scorers (:func:`build_scorer`) decide where scores come from (the low-resolution forward,
a loss history, a proxy); the noisy-label guard caps scores of samples that stay extreme.
"""
from smartloader.scoring.model import ModelHandle, default_loss, downsample, scoring_mode
from smartloader.scoring.scorers import (SCORER_TYPES, HistoryScorer, LowResLossScorer,
                                         ProxyScorer, Scorer, build_scorer)

__all__ = ["ModelHandle", "default_loss", "downsample", "scoring_mode", "Scorer",
           "build_scorer", "SCORER_TYPES", "LowResLossScorer", "HistoryScorer", "ProxyScorer"]

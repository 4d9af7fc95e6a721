"""Scoring: per-sample scores for a pool, without side effects on the model.

:class:`ModelHandle` runs the side-effect-free forward (no grad, eval mode, flags restored);
the scorers (:func:`build_scorer`) decide where scores come from (the low-resolution forward,
a loss history, IMPON's regressor, a co-trained proxy network, learnability); the pure
functions behind them are :func:`proxy_losses`, :func:`proxy_train_step`,
:func:`learnability` and :func:`ema_update`; the noisy-label guard caps scores of samples
that stay extreme.
"""
from smartloader.scoring.model import ModelHandle, default_loss, downsample, scoring_mode
from smartloader.scoring.learnability import ema_update, learnability
from smartloader.scoring.proxy_model import ProxyNet, proxy_losses, proxy_train_step
from smartloader.scoring.scorers import (SCORER_TYPES, HistoryScorer, LearnabilityScorer,
                                         LowResLossScorer, ProxyModelScorer, ProxyScorer,
                                         Scorer, build_scorer)

__all__ = ["ModelHandle", "default_loss", "downsample", "scoring_mode", "Scorer",
           "build_scorer", "SCORER_TYPES", "LowResLossScorer", "HistoryScorer", "ProxyScorer",
           "ProxyModelScorer", "LearnabilityScorer", "ProxyNet", "proxy_losses",
           "proxy_train_step", "learnability", "ema_update"]

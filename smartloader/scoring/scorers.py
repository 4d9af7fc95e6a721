"""Scorers: where a pool's per-sample scores (higher = train on it sooner) come from.

The loader calls every scorer through the :class:`Scorer` protocol, once per selection step::

    scores = scorer.score(pool_fields, sample_ids, step)   # Tensor[n] or None
    if scores is None:                                      # "run the model this step"
        losses = <low-res forward of the pool, no grad>
        scorer.observe(sample_ids, losses)                  # pool order, all n samples
        scores = losses
    ...
    scorer.observe(trained_ids, trained_losses, features=trained_fields)  # optional

- ``pool_fields``: the pool batch as a ``dict`` of field name -> tensor (first dim ``n``).
- ``sample_ids``: ``LongTensor[n]`` of dataset indices, or ``None`` when the data has none.
- ``step``: the global training step (``Progress.step``).
- ``observe(sample_ids, losses, features=None)``: true losses, either of the whole last
  scored pool (in pool order) or of the trained subset; ``features`` are the fields of those
  samples (a ``dict``) when they are not the whole pool.
- ``reset_epoch(epoch)``: called by the loader at each epoch start.
- ``state_dict()`` / ``load_state_dict(state)``: strict; ``{}`` when stateless.
  ``check_state(state, path)`` raises :class:`~smartloader.errors.StateError` naming the
  entry (under ``path``) unless ``load_state_dict`` would accept ``state``, changing nothing.
- ``needs_weight_norm`` (class attribute, default absent/False): when true the loader calls
  ``scorer.set_context(weight_norm)`` with :func:`smartloader.scoring.proxy.model_weight_norm`
  of the live model before each :meth:`score`.

Optional hooks, called when a scorer has them:

- ``attach(live_model)``: once, when the loader is built (the EMA reference copies the model;
  the proxy reads its number of classes).
- ``bind(handle)``: before the first :meth:`score`, the loader's
  :class:`~smartloader.scoring.model.ModelHandle` (to score another network exactly like the
  live one: ``handle.losses_with(net, x, y)``).
- ``adjust(losses) -> scores``: after a forward the scorer asked for (``score`` returned
  ``None``), turns the live model's losses into the pool's scores (learnability subtracts
  its reference); without it the losses are the scores.
- ``trained(fields, sample_ids)``: every yielded batch (uniform phases too), as
  ``{"input", "target"}``; a co-trained proxy takes its training step here. Its wall time is
  ``StepStats.scorer_train_time_s``.

Types built by :func:`build_scorer`: ``low_res_loss`` (the thesis' default, a marker that
always asks for the forward), ``history`` (last known loss per sample, no forward),
``proxy`` (IMPON's online linear regressor, a forward every ``refresh_every`` steps),
``proxy_model`` (a small co-trained network scores the pool) and ``learnability`` (learner
loss minus a reference loss).
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch

from smartloader.common.spec import Typed
from smartloader.scoring.history import HISTORY, HistoryScorer, make_history_scorer
from smartloader.scoring.learnability import (LEARNABILITY, LearnabilityScorer,
                                              make_learnability_scorer)
from smartloader.scoring.low_res import LOW_RES, LowResLossScorer, make_low_res_scorer
from smartloader.scoring.proxy import (FEATURES, PROXY, ProxyScorer, make_proxy_scorer,
                                       model_weight_norm, per_sample_features)
from smartloader.scoring.proxy_model import (PROXY_MODEL, ProxyModelScorer,
                                             make_proxy_model_scorer)

__all__ = [
    "Scorer", "build_scorer", "make_scorer", "SCORER", "SCORER_TYPES", "DEFAULT_SCORER",
    "LowResLossScorer", "HistoryScorer", "ProxyScorer", "ProxyModelScorer", "LearnabilityScorer",
    "per_sample_features", "model_weight_norm", "FEATURES",
]


@runtime_checkable
class Scorer(Protocol):
    """What the loader calls to score a pool (see the module docstring for the call order)."""

    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> torch.Tensor | None: ...

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None: ...

    def reset_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def check_state(self, state: Any, path: str = "state") -> None: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


_MAKE = {
    "low_res_loss": make_low_res_scorer,
    "history": make_history_scorer,
    "proxy": make_proxy_scorer,
    "proxy_model": make_proxy_model_scorer,
    "learnability": make_learnability_scorer,
}
#: The ``scorer:`` section; ``type`` picks the scorer.
SCORER = Typed("scorer", (("low_res_loss", LOW_RES), ("history", HISTORY), ("proxy", PROXY),
                         ("proxy_model", PROXY_MODEL), ("learnability", LEARNABILITY)),
               doc="where a pool's scores come from",
               type_doc="`low_res_loss`: the low-resolution forward; `history`: each sample's "
                        "last known loss (needs index_key); `proxy`: IMPON's loss regressor; "
                        "`proxy_model`: a small co-trained network; `learnability`: learner "
                        "loss minus a reference loss",
               required_message="is required (one of {choices})")
SCORER_TYPES = tuple(SCORER.types)
#: The scorer used when the config has none.
DEFAULT_SCORER = "low_res_loss"


def make_scorer(values: Mapping[str, Any] | None) -> Scorer:
    """The scorer of a parsed :data:`SCORER` section (None: the default scorer)."""
    return _MAKE[DEFAULT_SCORER if values is None else values["type"]](values)


def build_scorer(mapping: Any, path: str = "scorer") -> Scorer:
    """Build a scorer from its YAML mapping (``{type: low_res_loss}``, ``{type: history}``,
    ``{type: proxy, ...}``); errors name the key path."""
    return make_scorer(SCORER.parse(mapping, path))

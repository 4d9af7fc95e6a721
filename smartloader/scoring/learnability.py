"""``{type: learnability, learner, reference, ...}`` (keys and defaults: :data:`LEARNABILITY`):
the live model's loss minus a reference loss.

RHO-LOSS (Mindermann et al. 2022, "Prioritized training on points that are learnable, worth
learning, and not yet learnt") scores a sample by its *reducible* loss: the learner's loss
minus the loss of a reference model. High-loss-only selection over-picks noisy and
unlearnable samples (their loss stays high under any model); a sample that a reference
already fits but the learner does not is the one worth a step. JEST and ClassAct use small
or cheap reference models. No holdout set is needed here; the reference is one of:

- ``ema``: a slow exponential moving average of the live model's weights (a deep copy made
  at ``wrap()``, updated every ``ema_every`` yielded batches with ``ema_decay``; floating
  buffers such as BatchNorm statistics are averaged too). Scoring it is one more forward of
  the pool, at the loader's scoring size.
- ``proxy_model``: the co-trained small network of the ``proxy_model`` scorer.
- ``best``: each sample's best (lowest) loss observed so far; no forward at all.

The learner's loss is ``forward`` (the loader's low-resolution forward of the live model) or
``history`` (the last loss the training loop reported for the sample; no forward). So
``{learner: history, reference: best}`` costs nothing beyond a table lookup; it scores a
sample by how far its loss has risen above the best the model once reached on it
(forgetting). A sample with no reference yet (never observed) gets the largest score in its
pool, so it is tried soon rather than starved.

:func:`learnability` is the pure function: ``learner_losses - reference_losses``.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Mapping

import torch

from smartloader.common.spec import Field, Section
from smartloader.common.state import StateError, check_int, check_same, check_tensor, strict_keys
from smartloader.scoring.history import HistoryScorer
from smartloader.scoring.proxy_model import PROXY_MODEL, ProxyModelScorer

__all__ = ["LEARNABILITY", "LearnabilityScorer", "learnability", "ema_update",
           "make_learnability_scorer"]

_PROXY = {f.name: f.default for f in PROXY_MODEL.fields}

#: ``{type: learnability, ...}``: the keys besides ``type``.
LEARNABILITY = Section("learnability", (
    Field("learner", "str", "forward", choices=("forward", "history"),
          doc="the live model's loss: `forward`: the low-resolution scoring forward; "
              "`history`: the last reported training loss (no forward; needs index_key)"),
    Field("reference", "str", "ema", choices=("ema", "proxy_model", "best"),
          doc="what it is compared with: `ema`: a slow EMA copy of the live model (one more "
              "forward); `proxy_model`: a co-trained small network; `best`: the sample's "
              "lowest loss so far (no forward; needs index_key)"),
    Field("ema_decay", "float", 0.99, minimum=0.0, maximum=1.0,
          doc="EMA weight kept per update (0.99: a horizon of about 100 updates)"),
    Field("ema_every", "int", 1, minimum=1, doc="yielded batches per EMA update"),
    Field("proxy_width", "int", _PROXY["width"], minimum=1,
          doc="width of the built-in proxy (reference: proxy_model)"),
    Field("proxy_train_every", "int", _PROXY["train_every"], minimum=1,
          doc="yielded batches per proxy training step (reference: proxy_model)"),
    Field("proxy_resolution", "int", None, minimum=1, nullable=True,
          doc="px the proxy trains and scores at; null = as loaded (reference: proxy_model)"),
), doc="learner loss minus a reference loss (RHO-LOSS), no holdout set")
_D = {f.name: f.default for f in LEARNABILITY.fields}


def learnability(learner_losses: torch.Tensor, reference_losses: torch.Tensor) -> torch.Tensor:
    """Reducible loss: ``learner_losses - reference_losses`` (float32, same shape)."""
    return learner_losses.float() - reference_losses.float().to(learner_losses.device)


def ema_update(ema: torch.nn.Module, live: torch.nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * live`` for every floating parameter and buffer;
    integer buffers (BatchNorm's step counter) are copied. Both must share one architecture."""
    with torch.no_grad():
        ours, theirs = ema.state_dict(), live.state_dict()
        for key, value in ours.items():
            src = theirs[key].to(value.device)
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(src.to(value.dtype), alpha=1.0 - decay)
            else:
                value.copy_(src)


class LearnabilityScorer:
    """Learner loss minus reference loss (see the module docstring).

    Args:
        learner: ``"forward"`` or ``"history"``.
        reference: ``"ema"``, ``"proxy_model"`` or ``"best"``.
        ema_decay, ema_every: the EMA reference's decay and update interval.
        proxy: the :class:`~smartloader.scoring.proxy_model.ProxyModelScorer` of the
            ``proxy_model`` reference (built with defaults when ``None``).
    """

    def __init__(self, learner: str = _D["learner"], reference: str = _D["reference"],
                 ema_decay: float = _D["ema_decay"], ema_every: int = _D["ema_every"],
                 proxy: ProxyModelScorer | None = None) -> None:
        if learner not in ("forward", "history"):
            raise ValueError(f"learner must be 'forward' or 'history', got {learner!r}")
        if reference not in ("ema", "proxy_model", "best"):
            raise ValueError(f"reference must be 'ema', 'proxy_model' or 'best', got "
                             f"{reference!r}")
        if not 0.0 <= ema_decay <= 1.0 or ema_every < 1:
            raise ValueError(f"need 0 <= ema_decay <= 1 and ema_every >= 1, got {ema_decay}, "
                             f"{ema_every}")
        self.learner, self.reference = learner, reference
        self.ema_decay, self.ema_every = float(ema_decay), int(ema_every)
        self.proxy = (proxy or ProxyModelScorer()) if reference == "proxy_model" else None
        self.history = HistoryScorer("max") if learner == "history" else None
        self._best = torch.zeros(0, dtype=torch.float32)   # +inf = never observed
        self.ema: torch.nn.Module | None = None
        self._live: torch.nn.Module | None = None
        self._handle: Any = None
        self._pool: tuple | None = None
        self.seen = 0
        self.train_time_s = 0.0

    @property
    def needs_ids(self) -> bool:
        return self.learner == "history" or self.reference == "best"

    # -- wiring -----------------------------------------------------------------------------
    def attach(self, live_model: torch.nn.Module) -> None:
        """The live model: the EMA reference starts as a frozen deep copy of it."""
        from smartloader.scoring.model import _unwrap
        self._live = _unwrap(live_model)
        if self.reference == "ema":
            self.ema = copy.deepcopy(self._live)
            for p in self.ema.parameters():
                p.requires_grad_(False)
        if self.proxy is not None:
            self.proxy.attach(live_model)

    def bind(self, handle: Any) -> None:
        """The loader's model handle: the EMA reference is scored exactly like the model."""
        self._handle = handle

    # -- the reference ----------------------------------------------------------------------
    def _grow(self, ids: torch.Tensor) -> None:
        need = int(ids.max()) + 1 if ids.numel() else 0
        if need > self._best.numel():
            best = torch.full((max(need, 2 * self._best.numel()),), float("inf"))
            best[: self._best.numel()] = self._best
            self._best = best

    @staticmethod
    def _ids(sample_ids: torch.Tensor | None, what: str) -> torch.Tensor:
        if sample_ids is None:
            raise ValueError(f"learnability scorer: {what} needs sample ids (index_key): "
                             f"learner 'history' and reference 'best' key losses by sample")
        return torch.as_tensor(sample_ids).reshape(-1).to("cpu", torch.int64)

    def _reference(self, fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
                   step: int, device: torch.device) -> torch.Tensor:
        """Reference losses of the pool; NaN where a sample has none yet (``best``)."""
        if self.reference == "ema":
            if self.ema is None or self._handle is None:
                raise RuntimeError("learnability scorer: the EMA reference needs attach() "
                                   "and bind() (the loader calls both)")
            return self._handle.losses_with(self.ema, fields["input"],
                                            fields["target"]).to(device)
        if self.reference == "proxy_model":
            return self.proxy.score(fields, sample_ids, step).to(device)
        ids = self._ids(sample_ids, "reference 'best'")
        self._grow(ids)
        best = self._best[ids]
        return torch.where(torch.isinf(best), torch.full_like(best, float("nan")),
                           best).to(device)

    def _combine(self, learner: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        scores = learnability(learner, reference)
        if self.reference != "best":   # only a best-past-loss table has no-reference gaps
            return scores
        # no reference yet: the pool's largest known score (0 when none is known); computed
        # on the device without a host read, since this runs every selection step
        unknown = torch.isnan(scores)
        top = torch.where(unknown, float("-inf"), scores).max()
        top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
        return torch.where(unknown, top, scores)

    # -- protocol ---------------------------------------------------------------------------
    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> torch.Tensor | None:
        if self.learner == "forward":   # the loader runs its forward, then calls adjust()
            self._pool = (pool_fields, sample_ids, step)
            return None
        learner = self.history.score(pool_fields, self._ids(sample_ids, "learner 'history'"),
                                     step)
        return self._combine(learner, self._reference(pool_fields, sample_ids, step,
                                                      learner.device))

    def adjust(self, losses: torch.Tensor) -> torch.Tensor:
        """The scores of the pool the last :meth:`score` saw, from the live model's forward
        ``losses`` of it."""
        if self._pool is None:
            raise RuntimeError("learnability scorer: adjust() before score()")
        fields, ids, step = self._pool
        self._pool = None
        return self._combine(losses, self._reference(fields, ids, step, losses.device))

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None:
        if not self.needs_ids:
            return
        ids = self._ids(sample_ids, "observe()")
        losses = losses.detach().reshape(-1).to("cpu", torch.float32)
        if self.history is not None:
            self.history.observe(ids, losses)
        ok = torch.isfinite(losses)
        ids, losses = ids[ok], losses[ok]
        self._grow(ids)
        # scatter-min: duplicates in one call keep their smallest loss
        self._best.scatter_reduce_(0, ids, losses, reduce="amin")

    def trained(self, fields: Mapping[str, Any], sample_ids: torch.Tensor | None) -> None:
        """The batch just yielded: update the EMA copy or train the proxy."""
        self.seen += 1
        if self.proxy is not None:
            self.proxy.trained(fields, sample_ids)
            self.train_time_s = self.proxy.train_time_s
        elif self.ema is not None and (self.seen - 1) % self.ema_every == 0:
            t0 = time.perf_counter()
            ema_update(self.ema, self._live, self.ema_decay)
            self.train_time_s += time.perf_counter() - t0

    def reset_epoch(self, epoch: int) -> None:
        """Nothing: the tables, the EMA and the proxy outlive epochs."""

    # -- state ------------------------------------------------------------------------------
    _KEYS = ("learner", "reference", "ema_decay", "ema_every", "best", "history", "ema",
             "proxy", "seen", "train_time_s")

    def state_dict(self) -> dict[str, Any]:
        return {"learner": self.learner, "reference": self.reference,
                "ema_decay": self.ema_decay, "ema_every": self.ema_every,
                "best": self._best.clone(),
                "history": None if self.history is None else self.history.state_dict(),
                "ema": None if self.ema is None else
                {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()},
                "proxy": None if self.proxy is None else self.proxy.state_dict(),
                "seen": self.seen, "train_time_s": self.train_time_s}

    def check_state(self, state: Any, path: str = "state") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, self._KEYS, path)
        for key in ("learner", "reference", "ema_decay", "ema_every"):
            check_same(state[key], getattr(self, key), f"{path}.{key}", "learnability scorer")
        check_tensor(state["best"], f"{path}.best", torch.float32, (None,), no_nan=True)
        check_int(state["seen"], f"{path}.seen")
        if self.history is not None:
            self.history.check_state(state["history"], f"{path}.history")
        if self.proxy is not None:
            self.proxy.check_state(state["proxy"], f"{path}.proxy")
        if self.ema is not None:
            saved = state["ema"]
            if not isinstance(saved, Mapping) or set(saved) != set(self.ema.state_dict()):
                raise StateError(f"{path}.ema: saved for a different model (its state_dict "
                                 f"keys differ from this model's)")
            for k, v in self.ema.state_dict().items():
                if not isinstance(saved[k], torch.Tensor) or saved[k].shape != v.shape:
                    raise StateError(f"{path}.ema.{k}: saved shape "
                                     f"{tuple(getattr(saved[k], 'shape', ()))}, this model "
                                     f"has {tuple(v.shape)}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self._best = state["best"].detach().cpu().clone()
        if self.history is not None:
            self.history.load_state_dict(state["history"])
        if self.proxy is not None:
            self.proxy.load_state_dict(state["proxy"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.seen, self.train_time_s = state["seen"], float(state["train_time_s"])
        self._pool = None


def make_learnability_scorer(values: Mapping[str, Any]) -> LearnabilityScorer:
    proxy = None
    if values["reference"] == "proxy_model":
        proxy = ProxyModelScorer(width=values["proxy_width"],
                                 train_every=values["proxy_train_every"],
                                 resolution=values["proxy_resolution"])
    return LearnabilityScorer(values["learner"], values["reference"], values["ema_decay"],
                              values["ema_every"], proxy)

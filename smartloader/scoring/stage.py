"""The score and guard stages of a selection step, and what the loop reports back.

:meth:`ScoringStage.score` returns a pool's scores: the scorer's own when it has them (a
loss table, a proxy), else the low-resolution forward of the live model
(:class:`~smartloader.scoring.model.ModelHandle`), which the scorer then observes. The noisy
guard, when configured, caps the scores of samples that stay extreme. :meth:`remember` keeps
the ids and inputs of the batch just yielded, so :meth:`report_losses` can hand the training
losses to the scorer.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch

from smartloader.common import batch as B
from smartloader.common.spec import Values
from smartloader.common.state import StateError, check_int, strict_keys
from smartloader.scoring.noisy_guard import NOISY_GUARD, make_noisy_guard
from smartloader.scoring.proxy import model_weight_norm
from smartloader.scoring.scorers import SCORER, make_scorer

__all__ = ["ScoringStage", "key_path"]


def key_path(raw: Any) -> tuple | None:
    """A YAML key (``0``, ``"index"`` or a list of them; a tuple is already a key path) as
    a key path tuple."""
    if raw is None:
        return None
    return tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)


def _parsed(section: Any, spec: Any, path: str) -> Any:
    # Config.strategies holds parsed Values; a plain mapping (written by hand) is read here.
    if section is None or isinstance(section, Values):
        return section
    return spec.parse(section, path)


class ScoringStage:
    """The configured scorer and noisy guard around the live model's scoring forward.

    Args:
        strategies: ``Config.strategies``: the parsed ``scorer`` / ``noisy_guard`` sections
            and the ``index_key`` (plain mappings as written are read too).
        model: the live model (the proxy scorer reads its weight norm).
    """

    def __init__(self, strategies: Mapping[str, Any], model: torch.nn.Module) -> None:
        self._model = model
        self.index_key = key_path(strategies.get("index_key"))
        self.scorer = make_scorer(_parsed(strategies.get("scorer"), SCORER, "scorer"))
        if hasattr(self.scorer, "attach"):
            self.scorer.attach(model)
        self._bound = not hasattr(self.scorer, "bind")
        self._adjust = getattr(self.scorer, "adjust", None)
        self._trained = getattr(self.scorer, "trained", None)
        #: seconds the scorer spent learning from the last yielded batch (a proxy's step)
        self.train_time_s = 0.0
        guard = _parsed(strategies.get("noisy_guard"), NOISY_GUARD, "noisy_guard")
        self.guard = None if guard is None else make_noisy_guard(guard)
        self.forwards = 0          # scoring forwards run
        self.skipped = 0           # selection steps scored without a forward
        self._last: tuple | None = None   # (ids, inputs) of the last yielded batch

    def ids(self, batch: Any) -> torch.Tensor | None:
        """The batch's sample ids (``index_key``), or None without one."""
        if self.index_key is None:
            return None
        return torch.as_tensor(B.get_field(batch, self.index_key, "index_key")).reshape(-1)

    def start_epoch(self, epoch: int, resumed: bool) -> None:
        if not resumed:  # a resumed epoch already reset when it first started
            self.scorer.reset_epoch(epoch)

    def score(self, pooled: Any, keys: tuple, step: int, handle: Any):
        """``(scores, losses, by)``: the guarded scores, the raw ones, and ``"forward"`` or
        ``"scorer"`` for what produced them."""
        ik, tk = keys
        x, y = B.get_field(pooled, ik), B.get_field(pooled, tk)
        ids = self.ids(pooled)
        if getattr(self.scorer, "needs_weight_norm", False):
            self.scorer.set_context(model_weight_norm(self._model))
        if not self._bound:
            self.scorer.bind(handle)
            self._bound = True
        scores = self.scorer.score({"input": x, "target": y}, ids, step)
        if scores is None:
            raw = handle.losses(x, y)
            # the scorer's own scores from the forward (learnability: minus its reference),
            # read before observe() adds these losses to its tables
            scores = raw if self._adjust is None else self._adjust(raw)
            self.scorer.observe(ids, raw)
            self.forwards += 1
            by = "forward"
        else:  # a table scorer answers on the ids' device; selection runs on the model's
            scores = raw = scores.to(handle.device, non_blocking=True)
            self.skipped += 1
            by = "scorer"
        if self.guard is not None:
            scores = self.guard.apply(ids, scores)
        return scores, raw, by

    @property
    def flagged(self) -> int | None:
        """Sample ids the noisy guard flags now; None without a guard."""
        return None if self.guard is None else self.guard.num_flagged

    def remember(self, batch: Any, keys: tuple) -> None:
        """Keep the yielded batch (as selected, before any batch transform) for
        :meth:`report_losses`, and let a learning scorer (a co-trained proxy) learn from it."""
        self._last = (batch, keys)
        if self._trained is not None:
            t0 = time.perf_counter()
            self._trained({"input": B.get_field(batch, keys[0]),
                           "target": B.get_field(batch, keys[1])}, self.ids(batch))
            self.train_time_s = time.perf_counter() - t0

    def report_losses(self, losses: torch.Tensor, batch: Any = None) -> None:
        """Hand the training losses of ``batch`` (default: the last yielded) to the scorer,
        with the ids and inputs read from that batch."""
        if self._last is None:
            raise RuntimeError("report_losses() before any batch was yielded")
        last, keys = self._last
        batch = last if batch is None else batch
        ids, x = self.ids(batch), B.get_field(batch, keys[0])
        losses = torch.as_tensor(losses).detach().reshape(-1)
        n = B.batch_size_of(x)
        if losses.numel() != n:
            raise ValueError(f"report_losses(): got {losses.numel()} losses for a batch of "
                             f"{n} samples (pass per-sample losses, reduction='none')")
        self.scorer.observe(ids, losses, features={"input": x})

    # -- state ----------------------------------------------------------------------------
    _KEYS = {"scorer", "noisy_guard", "forwards", "skipped"}

    def state_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer.state_dict(),
                "noisy_guard": None if self.guard is None else self.guard.state_dict(),
                "forwards": self.forwards, "skipped": self.skipped}

    def check_state(self, state: Any, path: str = "state.scoring") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, self._KEYS, path)
        check_int(state["forwards"], f"{path}.forwards")
        check_int(state["skipped"], f"{path}.skipped")
        if (state["noisy_guard"] is None) != (self.guard is None):
            raise StateError(f"{path}.noisy_guard: saved with a different config (saved "
                             f"{'no guard' if state['noisy_guard'] is None else 'a guard'}, "
                             f"this loader has {'none' if self.guard is None else 'one'})")
        self.scorer.check_state(state["scorer"], f"{path}.scorer")
        if self.guard is not None:
            self.guard.check_state(state["noisy_guard"], f"{path}.noisy_guard")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self.scorer.load_state_dict(state["scorer"])
        if self.guard is not None:
            self.guard.load_state_dict(state["noisy_guard"])
        self.forwards, self.skipped = state["forwards"], state["skipped"]
        self._last = None

"""The strategy parts SmartLoader calls around a selection step (docs/strategies.md).

``SmartLoader`` keeps the pooling, the phases and the ranked rule; this module holds what the
``scorer``, ``noisy_guard``, ``batch_transform``, ``index_key`` keys and the non-ranked phase
rules (``uniform``, ``topk``, ``selective_backprop``) add, so the loader only makes a few
calls:

- :meth:`Strategies.score`: the pool's scores, from the scorer or the low-res forward, then
  the noisy-label guard;
- :meth:`Strategies.choose`: the phase's selector for a non-ranked rule (NaN -> uniform,
  decided on the device);
- :meth:`Strategies.emit`: remembers the yielded samples (for ``report_losses``) and applies
  the batch transform;
- state by composition under constant keys, strict on load.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from . import _validate as v
from . import batch as B
from .errors import ConfigError
from .mixing import build_batch_transform
from .noisy import build_noisy_guard
from .scorers import build_scorer, model_weight_norm
from .selection import _gumbel_top_k
from .selectors import build_selector

__all__ = ["STRATEGY_KEYS", "parse_strategies", "Strategies"]

#: Top-level config keys this module owns.
STRATEGY_KEYS = ("index_key", "scorer", "noisy_guard", "batch_transform")
#: Scorer types that key their state by sample id, so they need ``index_key``.
_NEEDS_IDS = ("history",)


def parse_strategies(m: Mapping[str, Any], phases: Sequence[Any], scope: str) -> dict:
    """Validate the strategy keys of the raw config ``m`` (building each part once, so every
    error names its key path) and return those given, as written."""
    out: dict[str, Any] = {}
    index_key = m.get("index_key")
    if index_key is not None:
        parts = index_key if isinstance(index_key, list) else [index_key]
        if not parts or any(isinstance(p, bool) or not isinstance(p, (int, str)) for p in parts):
            raise v.fail("index_key", "must be an integer position, a string key or a "
                         "non-empty list of them", index_key)
        out["index_key"] = index_key
    if m.get("scorer") is not None:
        build_scorer(m["scorer"], "scorer")  # validates; the loader builds its own
        kind = m["scorer"]["type"]
        if kind in _NEEDS_IDS and index_key is None:
            raise ConfigError(f"scorer.type: {kind} keys losses by sample id, so it needs "
                              f"index_key (where the dataset index is in a batch)")
        out["scorer"] = m["scorer"]
    if m.get("noisy_guard") is not None:
        build_noisy_guard(m["noisy_guard"], "noisy_guard")
        if index_key is None:
            raise ConfigError("noisy_guard: tracks samples across pools by sample id, so it "
                              "needs index_key (where the dataset index is in a batch)")
        out["noisy_guard"] = m["noisy_guard"]
    if m.get("batch_transform") is not None:
        build_batch_transform(m["batch_transform"], "batch_transform")
        out["batch_transform"] = m["batch_transform"]
    for i, p in enumerate(phases):
        if scope == "global" and p.selection not in ("uniform", "ranked"):
            raise ConfigError(f"phases[{i}].selection: selection_scope global supports only "
                              f"ranked, got {p.selection!r}")
    return out


def _selector_spec(phase: Any) -> dict:
    spec: dict[str, Any] = {"type": phase.selection}
    if phase.selection == "selective_backprop":
        spec["beta"] = phase.beta
        if phase.window is not None:
            spec["window"] = phase.window
    return spec


def _key(raw: Any) -> tuple | None:
    if raw is None:
        return None
    return tuple(raw) if isinstance(raw, list) else (raw,)


class Strategies:
    """The configured scorer, noisy guard, per-phase selectors and batch transform.

    Args:
        strategies: ``Config.strategies`` (validated YAML).
        phases: the resolved phases; each non-ranked selecting phase gets its own selector
            (so a selective_backprop window belongs to its phase).
        model: the live model (for the proxy scorer's weight-norm context).
        seed: seed of the batch transform's own CPU ``torch.Generator`` (saved in state).
    """

    def __init__(self, strategies: Mapping[str, Any], phases: Sequence[Any],
                 model: torch.nn.Module, seed: int) -> None:
        self._model = model
        self.index_key = _key(strategies.get("index_key"))
        self.scorer = build_scorer(strategies.get("scorer") or {"type": "low_res_loss"})
        guard = strategies.get("noisy_guard")
        self.guard = None if guard is None else build_noisy_guard(guard)
        bt = strategies.get("batch_transform")
        self.transform = None if bt is None else build_batch_transform(bt)
        self.selectors = {p.name: build_selector(_selector_spec(p)) for p in phases
                          if p.selection not in ("uniform", "ranked")}
        self.generator = torch.Generator().manual_seed(seed)
        self.forwards = 0          # scoring forwards run
        self.skipped = 0           # selection steps scored without a forward
        self._last: tuple | None = None   # (ids, inputs) of the last yielded batch

    # -- hooks ----------------------------------------------------------------------------
    def ids(self, batch: Any) -> torch.Tensor | None:
        if self.index_key is None:
            return None
        return torch.as_tensor(B.get_field(batch, self.index_key, "index_key")).reshape(-1)

    def start_epoch(self, epoch: int, resumed: bool) -> None:
        if not resumed:  # a resumed epoch already reset when it first started
            self.scorer.reset_epoch(epoch)

    def score(self, pooled: Any, keys: tuple, step: int, handle: Any):
        """``(scores, losses_or_None, by)`` for a pool: the scorer's scores when it has them,
        else the low-res forward's losses (which the scorer then observes); the noisy guard
        caps the returned scores."""
        ik, tk = keys
        x, y = B.get_field(pooled, ik), B.get_field(pooled, tk)
        ids = self.ids(pooled)
        if getattr(self.scorer, "needs_weight_norm", False):
            self.scorer.set_context(model_weight_norm(self._model))
        scores = self.scorer.score({"input": x, "target": y}, ids, step)
        if scores is None:
            scores = handle.losses(x, y)
            self.scorer.observe(ids, scores)
            self.forwards += 1
            by = "forward"
        else:  # a table scorer answers on the ids' device; selection runs on the model's
            scores = scores.to(handle.device, non_blocking=True)
            self.skipped += 1
            by = "scorer"
        raw = scores
        if self.guard is not None:
            scores = self.guard.apply(ids, scores)
        return scores, raw, by

    def choose(self, scores: torch.Tensor, k: int, phase: Any,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices from the phase's selector, and whether the pool fell back (a 0-d int64
        tensor on the scores' device, 0 or 1).

        A pool with any NaN/inf score is drawn uniformly, like the ranked path, and without
        a host read: the selector runs on the pool with every score replaced by +inf (so a
        Selective-Backprop window records no value from it), a uniform Gumbel-top-k is drawn
        after it from the same generator, and ``torch.where`` keeps one of the two.
        """
        finite = torch.isfinite(scores).all()
        safe = torch.where(finite, scores, torch.full_like(scores, float("inf")))
        selected = self.selectors[phase.name].select(safe, k, generator)
        uniform = _gumbel_top_k(torch.zeros(scores.shape[0], device=scores.device), k,
                                generator)
        return torch.where(finite, selected, uniform), (~finite).to(torch.int64)

    def emit(self, batch: Any, keys: tuple) -> Any:
        """Remember the yielded samples for :meth:`report_losses`; apply the batch transform."""
        ik, tk = keys
        self._last = (self.ids(batch), B.get_field(batch, ik))
        if self.transform is None:
            return batch
        x, y = self.transform(B.get_field(batch, ik), B.get_field(batch, tk), self.generator)
        return B.replace_field(B.replace_field(batch, ik, x), tk, y)

    def report_losses(self, losses: torch.Tensor) -> None:
        if self._last is None:
            raise RuntimeError("report_losses() before any batch was yielded")
        ids, x = self._last
        losses = torch.as_tensor(losses).detach().reshape(-1)
        if losses.numel() != x.shape[0]:
            raise ValueError(f"report_losses(): got {losses.numel()} losses for a batch of "
                             f"{x.shape[0]} samples (pass per-sample losses, reduction='none')")
        self.scorer.observe(ids, losses, features={"input": x})

    # -- state ----------------------------------------------------------------------------
    _KEYS = {"scorer", "noisy_guard", "selectors", "generator", "forwards", "skipped"}

    def state_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer.state_dict(),
                "noisy_guard": None if self.guard is None else self.guard.state_dict(),
                "selectors": {n: s.state_dict() for n, s in self.selectors.items()},
                # only a transform draws from it (None keeps plain states tensor-free)
                "generator": None if self.transform is None else self.generator.get_state(),
                "forwards": self.forwards, "skipped": self.skipped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or set(state) != self._KEYS:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"state.strategies: expected keys {sorted(self._KEYS)}, got {got}")
        if set(state["selectors"]) != set(self.selectors):
            raise ValueError(f"state.strategies.selectors: saved for phases "
                             f"{sorted(state['selectors'])}, this config has "
                             f"{sorted(self.selectors)}")
        if (state["noisy_guard"] is None) != (self.guard is None):
            raise ValueError("state.strategies.noisy_guard: saved with a different config")
        self.scorer.load_state_dict(state["scorer"])
        if self.guard is not None:
            self.guard.load_state_dict(state["noisy_guard"])
        for name, sel in self.selectors.items():
            sel.load_state_dict(state["selectors"][name])
        if (state["generator"] is None) != (self.transform is None):
            raise ValueError("state.strategies.generator: saved with a different "
                             "batch_transform config")
        if state["generator"] is not None:
            self.generator.set_state(state["generator"])
        self.forwards, self.skipped = int(state["forwards"]), int(state["skipped"])
        self._last = None

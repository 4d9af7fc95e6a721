"""``{type: history, default, max_age}`` (defaults: :data:`HISTORY`): each sample's last
known loss.

No model forward: a pool is scored with the loss each sample had the last time one was
observed (Loshchilov & Hutter 2015, "Online batch selection"; Schaul et al. 2015 keep the same
kind of table for prioritized replay). Losses arrive through :meth:`HistoryScorer.observe`,
i.e. the training losses the loader reports for trained samples, or the losses of a scoring
pass another part of the loader ran. The scorer never asks for a forward itself.

Samples never observed, or last observed more than ``max_age`` steps ago, get ``default``:
``max`` (default) gives them the largest loss currently known, so an unseen sample is tried
soon rather than starved (optimism under uncertainty); ``mean`` gives the mean known loss; a
number gives that loss. With nothing known at all, ``max`` and ``mean`` give 0 to everyone.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from smartloader.common.readers import as_float, as_str, fail
from smartloader.common.spec import Field, Section
from smartloader.common.state import check_int, check_same, check_tensor, strict_keys

_UNSEEN = -1


def _default(raw: Any, path: str) -> str | float:
    if isinstance(raw, str):
        return as_str(raw, path, choices=["max", "mean"])
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return as_float(raw, path)
    raise fail(path, "must be max, mean or a number", raw)


#: ``{type: history, ...}``: the keys besides ``type``.
HISTORY = Section("history", (
    Field("default", "any", "max", parse=_default, type_doc="`max`, `mean` or number",
          doc="score of a sample with no (or an expired) loss: the largest or mean known "
              "loss, or this number"),
    Field("max_age", "int", None, minimum=0, nullable=True,
          doc="steps after which a stored loss counts as unknown; null = never"),
), doc="each sample's last known loss, no forward; needs index_key")


class HistoryScorer:
    """Last known loss per sample id, with its age in steps.

    Args:
        default: ``"max"``, ``"mean"`` or a float: the score of unknown (or expired) samples.
        max_age: steps after which a stored loss is treated as unknown; ``None`` = never.

    The table grows to the largest sample id seen (two numbers per id: the loss in float32 and
    the step it was observed at), lives on the CPU, and is saved in :meth:`state_dict`.
    ``observe`` stamps losses with the step of the latest :meth:`score` call.
    """

    def __init__(self, default: str | float = HISTORY.default("default"),
                 max_age: int | None = HISTORY.default("max_age")) -> None:
        if isinstance(default, str) and default not in ("max", "mean"):
            raise ValueError(f"default must be 'max', 'mean' or a number, got {default!r}")
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0 or None, got {max_age!r}")
        self.default = default
        self.max_age = max_age
        self._loss = torch.zeros(0, dtype=torch.float32)
        self._seen = torch.zeros(0, dtype=torch.int64)   # step last observed, -1 = never
        self._step = 0

    def _grow(self, ids: torch.Tensor) -> None:
        need = int(ids.max()) + 1 if ids.numel() else 0
        if need > self._loss.numel():
            size = max(need, 2 * self._loss.numel())
            loss = torch.zeros(size, dtype=torch.float32)
            seen = torch.full((size,), _UNSEEN, dtype=torch.int64)
            loss[: self._loss.numel()] = self._loss
            seen[: self._seen.numel()] = self._seen
            self._loss, self._seen = loss, seen

    @staticmethod
    def _ids(sample_ids: torch.Tensor | None, pool_fields: Mapping[str, Any] | None,
             what: str) -> torch.Tensor:
        if sample_ids is None:
            fields = f" (pool fields: {sorted(pool_fields)})" if pool_fields is not None else ""
            raise ValueError(
                f"history scorer: {what} got sample_ids=None{fields}; this scorer keys losses "
                f"by dataset index, so the data must provide sample ids")
        ids = torch.as_tensor(sample_ids).reshape(-1).to("cpu", torch.int64)
        if ids.numel() and int(ids.min()) < 0:
            raise ValueError(f"history scorer: sample ids must be >= 0, got {int(ids.min())}")
        return ids

    def ages(self, sample_ids: torch.Tensor, step: int | None = None) -> torch.Tensor:
        """Steps since each sample's loss was observed (``step`` defaults to the last
        :meth:`score` step); ``-1`` for samples never observed."""
        ids = self._ids(sample_ids, None, "ages()")
        step = self._step if step is None else step
        self._grow(ids)
        seen = self._seen[ids]
        return torch.where(seen == _UNSEEN, torch.full_like(seen, -1), step - seen)

    def _default_value(self, known: torch.Tensor) -> float:
        if not isinstance(self.default, str):
            return float(self.default)
        # Whole-table reductions without a boolean-mask gather (that costs a nonzero pass).
        count = int(known.sum())
        if count == 0:
            return 0.0
        if self.default == "max":
            return float(torch.where(known, self._loss, float("-inf")).max())
        return float(torch.where(known, self._loss, 0.0).sum() / count)

    def _known_mask(self, seen: torch.Tensor, step: int) -> torch.Tensor:
        known = seen != _UNSEEN
        if self.max_age is not None:
            known &= (step - seen) <= self.max_age
        return known

    def score(self, pool_fields: Mapping[str, Any], sample_ids: torch.Tensor | None,
              step: int) -> torch.Tensor:
        ids = self._ids(sample_ids, pool_fields, "score()")
        self._step = int(step)
        self._grow(ids)
        known = self._known_mask(self._seen[ids], self._step)
        scores = self._loss[ids]
        if not bool(known.all()):  # the default needs a pass over the whole table: only then
            default = self._default_value(self._known_mask(self._seen, self._step))
            scores = torch.where(known, scores, torch.full((ids.numel(),), default))
        return scores.to(torch.as_tensor(sample_ids).device)

    def observe(self, sample_ids: torch.Tensor | None, losses: torch.Tensor,
                features: Any = None) -> None:
        ids = self._ids(sample_ids, None, "observe()")
        losses = losses.detach().reshape(-1).to("cpu", torch.float32)
        if losses.numel() != ids.numel():
            raise ValueError(f"history scorer: observe() got {ids.numel()} ids and "
                             f"{losses.numel()} losses")
        ok = torch.isfinite(losses)   # a NaN loss says nothing about the sample
        self._grow(ids)
        self._loss[ids[ok]] = losses[ok]
        self._seen[ids[ok]] = self._step

    def reset_epoch(self, epoch: int) -> None:
        """Nothing: the table is the point of this scorer and outlives epochs."""

    _KEYS = ("loss", "seen", "step", "default", "max_age")

    def state_dict(self) -> dict[str, Any]:
        """The table (``loss`` float32 and ``seen`` int64, one entry per sample id), the
        step of the last :meth:`score`, and ``default`` / ``max_age`` (checked on load)."""
        return {"loss": self._loss.clone(), "seen": self._seen.clone(), "step": self._step,
                "default": self.default, "max_age": self.max_age}

    def check_state(self, state: Any, path: str = "state") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, self._KEYS, path)
        check_same(state["default"], self.default, f"{path}.default", "history scorer")
        check_same(state["max_age"], self.max_age, f"{path}.max_age", "history scorer")
        check_int(state["step"], f"{path}.step")
        loss = check_tensor(state["loss"], f"{path}.loss", torch.float32, (None,), finite=True)
        check_tensor(state["seen"], f"{path}.seen", torch.int64, (loss.numel(),),
                     minimum=_UNSEEN)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self._loss = state["loss"].detach().cpu().clone()
        self._seen = state["seen"].detach().cpu().clone()
        self._step = state["step"]


def make_history_scorer(values: Mapping[str, Any]) -> HistoryScorer:
    return HistoryScorer(values["default"], values["max_age"])

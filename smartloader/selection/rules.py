"""Selection rules: which ``k`` of the ``n`` pool samples to train on, given their scores.

Every rule exists twice: a pure function you can paste into your own loop, and
a small class built from YAML by :func:`build_selector` that the loader calls through the
:class:`Selector` protocol::

    select(scores: Tensor[n], k: int, generator: torch.Generator | None) -> LongTensor[k]

The returned indices are unique, in ``[0, n)`` and sorted ascending, so the chosen samples
keep their pool order. All randomness comes from the ``generator`` passed in (the loader owns
it and saves it); ``None`` falls back to torch's default generator and is meant for quick
experiments only.

Rules:

- ``uniform``: the baseline every benchmark compares against.
- ``topk``: greedy, keep the ``k`` largest scores. The thesis' ablation (Ch. 4) shows it
  *hurts* on ImageNet (74.7% vs 76.1%); it is here as a baseline.
- ``ranked``: the thesis' ranked multinomial (Eq. 4.4), delegated to
  :func:`smartloader.selection.ranked_multinomial`; the default rule.
- ``selective_backprop``: Jiang et al. 2019, "Accelerating deep learning by focusing on the
  biggest losers", adapted to draw exactly ``k`` (see :func:`selective_backprop_select`).
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch

from smartloader.common.spec import Field, Section, Typed
from smartloader.common.state import (Stateless, StateError, check_int, check_same, check_tensor,
                                      strict_keys)
from smartloader.selection.ranked import gumbel_top_k, ranked_log_weights, ranked_multinomial

__all__ = [
    "Selector", "uniform_select", "topk_select", "history_cdf", "selective_backprop_select",
    "UniformSelector", "TopKSelector", "RankedSelector", "SelectiveBackprop", "build_selector",
    "make_selector", "SELECTOR_TYPES", "SELECTOR", "BETA", "WINDOW",
]

#: The hardness exponent of the ranked and Selective-Backprop rules (the paper's 1.0).
BETA = Field("beta", "float", 1.0, minimum=0.0,
             doc="hardness: weight `P ** beta` of a sample at loss percentile `P`; 0 is "
                 "uniform, larger is greedier (large values hurt)")
#: Selective-Backprop's history of recent scores.
WINDOW = Field("window", "int", 1024, minimum=1,
               doc="scores in Selective-Backprop's percentile history (a few pools' worth)")


@runtime_checkable
class Selector(Protocol):
    """What the loader calls to choose the training batch from a scored pool."""

    def select(self, scores: torch.Tensor, k: int,
               generator: torch.Generator | None) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def check_state(self, state: Any, path: str = "state") -> None: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def _check_k(n: int, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k must be an integer in [0, {n}], got {k!r}")


def _check_scores(scores: torch.Tensor) -> None:
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (one score per pool sample), "
                         f"got shape {tuple(scores.shape)}")


def uniform_select(n: int, k: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """``k`` of ``n`` indices uniformly without replacement, sorted ascending.

    Example:
        >>> uniform_select(10, 3, torch.Generator().manual_seed(0)).shape
        torch.Size([3])
    """
    _check_k(n, k)
    return torch.randperm(n, generator=generator, device=device)[:k].sort().values


def topk_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, sorted ascending; ties go to the lower index.

    Deterministic (no generator). NaN scores count as the largest (``torch.sort`` order).

    Example:
        >>> topk_select(torch.tensor([0.5, 2.0, 2.0, 1.0]), 2)
        tensor([1, 2])
    """
    _check_scores(scores)
    _check_k(scores.shape[0], k)
    # A stable descending sort keeps equal scores in index order, so ties favour lower indices.
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k].sort().values


def history_cdf(scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """Percentile of each score among ``history`` plus itself, in ``(0, 1]``.

    ``P_i = (#{h in history : h <= s_i} + 1) / (len(history) + 1)``: the empirical CDF of
    ``s_i`` after adding it to the history, as Jiang et al. do before computing it. Including
    the sample keeps ``P_i > 0``, so ``P_i ** beta`` never zeroes a sample out. An empty history
    gives 1 for everyone (uniform). Non-finite history entries (the placeholders
    :class:`SelectiveBackprop` keeps for non-finite scores) are not counted; they are moved
    past the end rather than masked out, so nothing here waits for the device.
    """
    _check_scores(scores)
    ref = history.reshape(-1).to(device=scores.device, dtype=torch.float32)
    finite = torch.isfinite(ref)
    n_finite = finite.sum()
    # +inf sorts last and is never <= a finite score; the clamp covers +inf/NaN scores
    ref = torch.where(finite, ref, torch.full_like(ref, float("inf"))).sort().values
    below = torch.searchsorted(ref, scores.float().contiguous(), right=True)
    below = torch.minimum(below, n_finite)
    return (below.float() + 1.0) / (n_finite.float() + 1.0)


def selective_backprop_select(scores: torch.Tensor, k: int, history: torch.Tensor,
                              beta: float = BETA.default,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """Selective-Backprop (Jiang et al. 2019), drawing exactly ``k``.

    Weight of sample ``i`` is ``history_cdf(s_i) ** beta``: its loss percentile among a window
    of recent losses (``history``, e.g. the last 1024 losses seen), sharpened by ``beta``
    (Jiang et al. use 1-3; default 1; ``beta = 0`` is exactly uniform). ``k`` indices are drawn
    without replacement in proportion to these weights with Gumbel-top-k.

    How it differs from the paper: Jiang et al. keep each sample independently with
    probability ``P_i ** beta`` (a Bernoulli per sample) and backpropagate once enough samples
    have accumulated, so the number chosen per pool varies. A training step here needs exactly
    ``k`` samples, so we draw ``k`` in proportion to the same weights instead. The relative
    preference between two samples is the same; the absolute selection rate is fixed at
    ``k / n`` rather than set by ``beta``. Unlike the thesis' ranked rule, a loss is compared
    with a window of *recent* losses rather than with the current pool only, which costs a
    full forward of every candidate in the original method (here: whatever scorer is set).
    """
    _check_scores(scores)
    _check_k(scores.shape[0], k)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if k == scores.shape[0]:
        return torch.arange(k, device=scores.device)
    log_w = float(beta) * torch.log(history_cdf(scores, history))
    return gumbel_top_k(log_w, k, generator)


class UniformSelector(Stateless):
    """``{type: uniform}``: ignores the scores. Stateless."""

    def select(self, scores: torch.Tensor, k: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        _check_scores(scores)
        return uniform_select(scores.shape[0], k, generator, device=scores.device)



class TopKSelector(Stateless):
    """``{type: topk}``: greedy top-``k`` (a baseline; it hurts accuracy, thesis Ch. 4)."""

    def select(self, scores: torch.Tensor, k: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return topk_select(scores, k)



class RankedSelector(Stateless):
    """``{type: ranked, beta: 1.0}``: the thesis' ranked multinomial (Eq. 4.4). Stateless.

    ``beta`` (default 1.0, the paper's) is the hardness; 0 is uniform. ``log_weights`` maps a
    pool's scores to the log of its weights; the default ranks within the pool
    (:func:`~smartloader.selection.ranked.ranked_log_weights`), and under
    ``selection_scope: global`` the loader passes one that ranks among all ranks' pools.
    """

    def __init__(self, beta: float = BETA.default, log_weights=None) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.beta = float(beta)
        self._log_weights = log_weights

    def log_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """``beta * log(percentile)`` of every pool sample (what the Gumbel draw reads)."""
        if self._log_weights is not None:
            return self._log_weights(scores, self.beta)
        return ranked_log_weights(scores, self.beta)

    def select(self, scores: torch.Tensor, k: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        if self._log_weights is None:
            return ranked_multinomial(scores, k, self.beta, generator)
        return gumbel_top_k(self.log_weights(scores), k, generator)



class SelectiveBackprop:
    """``{type: selective_backprop, beta: 1.0, window: 1024}``.

    Keeps the last ``window`` scores it was shown (default 1024 losses, a few pools' worth)
    in a fixed-size ring tensor; each :meth:`select` first adds the pool's scores to the ring
    (as Jiang et al. add each loss before computing its percentile), then calls
    :func:`selective_backprop_select`. A non-finite score takes its slot as a +inf
    placeholder that :func:`history_cdf` does not count, so the ring advances by the pool
    size, known on the host, and nothing waits for the device. The ring is in
    :meth:`state_dict`, so a resumed run draws exactly as the uninterrupted one.
    """

    def __init__(self, beta: float = BETA.default, window: int = WINDOW.default) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.beta = float(beta)
        self.window = window
        self._ring = torch.zeros(window, dtype=torch.float32)
        self._filled = 0   # how many ring slots have been written (from tensor shapes only)
        self._pos = 0      # next slot to overwrite

    @property
    def history(self) -> torch.Tensor:
        """The window (oldest first), float32 on the ring's device; non-finite scores are
        there as +inf."""
        if self._filled < self.window:
            return self._ring[: self._filled]
        return torch.cat([self._ring[self._pos:], self._ring[: self._pos]])

    def push(self, scores: torch.Tensor) -> None:
        """Add ``scores`` to the window, overwriting the oldest; non-finite ones as +inf."""
        vals = scores.detach().reshape(-1).float()[-self.window:].to(self._ring.device)
        m = vals.numel()
        if m == 0:
            return
        vals = torch.where(torch.isfinite(vals), vals, torch.full_like(vals, float("inf")))
        slots = torch.arange(self._pos, self._pos + m, device=self._ring.device) % self.window
        self._ring.index_copy_(0, slots, vals)
        self._pos = (self._pos + m) % self.window
        self._filled = min(self.window, self._filled + m)

    def select(self, scores: torch.Tensor, k: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
        _check_scores(scores)
        if self._ring.device != scores.device:
            self._ring = self._ring.to(scores.device)
        self.push(scores)
        return selective_backprop_select(scores, k, self.history, self.beta, generator)

    _KEYS = ("window", "beta", "ring", "filled", "pos")

    def state_dict(self) -> dict[str, Any]:
        ring = self._ring.detach().cpu().clone()  # host read: state_dict, not per step
        return {"window": self.window, "beta": self.beta, "ring": ring,
                "filled": self._filled, "pos": self._pos}

    def check_state(self, state: Any, path: str = "state") -> None:
        """Raise :class:`~smartloader.errors.StateError` unless :meth:`load_state_dict`
        would accept ``state``; changes nothing."""
        strict_keys(self, state, self._KEYS, path)
        check_same(state["window"], self.window, f"{path}.window", "selector")
        check_same(state["beta"], self.beta, f"{path}.beta", "selector")
        ring = check_tensor(state["ring"], f"{path}.ring", torch.float32, (self.window,),
                            no_nan=True)
        if bool((ring == float("-inf")).any()):
            raise StateError(f"{path}.ring: must not hold -inf (non-finite scores are kept "
                             f"as +inf)")
        filled = check_int(state["filled"], f"{path}.filled", 0, self.window)
        # the ring fills in order, so until it is full the next slot is the next empty one
        pos = check_int(state["pos"], f"{path}.pos", 0, self.window - 1)
        if filled < self.window and pos != filled:
            raise StateError(f"{path}.pos: must equal {path}.filled ({filled}) until the "
                             f"window is full, got {pos}")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        self._ring = state["ring"].detach().clone().to(self._ring.device)
        self._filled = state["filled"]
        self._pos = state["pos"]


_BUILD = {"uniform": lambda v: UniformSelector(), "topk": lambda v: TopKSelector(),
          "ranked": lambda v: RankedSelector(v["beta"]),
          "selective_backprop": lambda v: SelectiveBackprop(v["beta"], v["window"])}
#: The rules, each with the keys it reads.
SELECTOR = Typed("selector", (
    ("uniform", Section("uniform", ())),
    ("ranked", Section("ranked", (BETA,))),
    ("topk", Section("topk", ())),
    ("selective_backprop", Section("selective_backprop", (BETA, WINDOW))),
), doc="a selection rule", required_message="is required (one of {choices})",
    type_doc="`uniform`: no scoring; `ranked`: the thesis' ranked multinomial; `topk`: the "
             "highest scores (greedy, hurts); `selective_backprop`: score percentile ** beta")
SELECTOR_TYPES = tuple(SELECTOR.types)


def make_selector(values: Mapping[str, Any]) -> Selector:
    """The selector of a parsed :data:`SELECTOR` section (no validation: it is done)."""
    return _BUILD[values["type"]](values)


def build_selector(mapping: Any, path: str = "selector") -> Selector:
    """Build a selector from its YAML mapping; errors name the key path.

    ``{type: uniform}``, ``{type: topk}``, ``{type: ranked, beta}``,
    ``{type: selective_backprop, beta, window}`` (defaults: :data:`BETA`, :data:`WINDOW`).
    """
    return make_selector(SELECTOR.parse(mapping, path))

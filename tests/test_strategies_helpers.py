"""Shared helpers for the strategy tests (imported by the other test_strategies_* files).

``ranked_reference`` is the core's reference ranked multinomial (thesis Eq. 4.4 with
Gumbel-top-k), copied here so these tests run before/without ``smartloader.selection``.
"""
from __future__ import annotations

import contextlib
import sys
import types
from unittest import mock

import torch


def ranked_reference(losses: torch.Tensor, k: int, beta: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    n = losses.shape[0]
    if k == n:
        return torch.arange(n)
    order = torch.argsort(losses, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(n)
    log_w = beta * torch.log((ranks.float() + 1.0) / n)
    u = torch.rand(n, generator=generator).clamp_(min=1e-20)
    keys = log_w - torch.log(-torch.log(u))
    return keys.topk(k).indices.sort().values


def ensure_selection_module(monkeypatch) -> None:
    """Make ``smartloader.selection.ranked_multinomial`` importable (our copy if missing)."""
    try:
        import smartloader.selection  # noqa: F401
    except ImportError:
        fake = types.ModuleType("smartloader.selection")
        fake.ranked_multinomial = ranked_reference
        monkeypatch.setitem(sys.modules, "smartloader.selection", fake)


@contextlib.contextmanager
def selection_module():
    """Context in which ``smartloader.selection`` imports (our copy if the real one is missing)."""
    try:
        import smartloader.selection  # noqa: F401
    except ImportError:
        fake = types.ModuleType("smartloader.selection")
        fake.ranked_multinomial = ranked_reference
        with mock.patch.dict(sys.modules, {"smartloader.selection": fake}):
            yield
    else:
        yield


def chi_square(counts: torch.Tensor, expected: float) -> float:
    return float(((counts.double() - expected) ** 2 / expected).sum())


# Upper 0.1% points of the chi-square distribution (df -> value), from standard tables.
CHI2_999 = {4: 18.467, 9: 27.877, 19: 43.820}


def test_ranked_reference_prefers_high_losses():
    g = torch.Generator().manual_seed(0)
    losses = torch.arange(10.0)
    counts = torch.zeros(10)
    for _ in range(2000):
        counts[ranked_reference(losses, 3, 1.0, g)] += 1
    assert counts[5:].sum() > 1.5 * counts[:5].sum()

"""Helpers for the sampling tests: a chi-square statistic with its table, and
``ranked_reference``, an independent re-implementation of the ranked multinomial (thesis
Eq. 4.4 with Gumbel-top-k) that tests compare the library against.
"""
from __future__ import annotations

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


def chi_square(counts: torch.Tensor, expected: float) -> float:
    return float(((counts.double() - expected) ** 2 / expected).sum())


# Upper 0.1% points of the chi-square distribution (df -> value), from standard tables.
CHI2_999 = {4: 18.467, 9: 27.877, 19: 43.820}

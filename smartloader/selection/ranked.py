"""Ranked multinomial selection (Eq. 4.4 of the thesis, ``../shared/ALGORITHMS.md`` §1).

A pool of ``n`` samples is ranked by loss, ascending. Sample ``i`` with rank ``r_i`` gets the
weight ``((r_i + 1) / n) ** beta`` (its empirical loss percentile, sharpened by the hardness
``beta``), and ``k`` samples are drawn *without replacement* in proportion to these weights.
``beta = 0`` is exactly uniform; ``beta = 1`` is the paper's default.

The draw uses the Gumbel-top-k trick: adding independent Gumbel noise to the log-weights and
keeping the ``k`` largest keys is the same distribution as drawing ``k`` times in sequence,
each time in proportion to the weights of what is left (Plackett-Luce). It needs no host
synchronisation, and unlike ``torch.multinomial`` it cannot fail when a large ``beta`` makes
the smallest weights underflow to zero.
"""
from __future__ import annotations

import torch

__all__ = ["ranked_multinomial", "ranked_log_weights", "gumbel_top_k", "uniform_choice"]


def ranked_log_weights(losses: torch.Tensor, beta: float) -> torch.Tensor:
    """Log of the Eq. 4.4 weights, ``beta * log((rank + 1) / n)``, in float32.

    Ties are ranked by position (a stable sort), so equal losses get distinct ranks.
    """
    n = losses.shape[0]
    order = torch.argsort(losses, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(n, device=losses.device)
    percentile = (ranks.to(torch.float32) + 1.0) / n
    return beta * torch.log(percentile)


def gumbel_top_k(log_weights: torch.Tensor, k: int,
                  generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(log_weights.shape, generator=generator, device=log_weights.device,
                   dtype=torch.float32)
    # clamp keeps log(-log(u)) finite when u hits exactly 0.
    gumbel = -torch.log(-torch.log(u.clamp_(min=1e-20)))
    keys = log_weights.float() + gumbel
    return keys.topk(k, sorted=False).indices.sort().values


def ranked_multinomial(losses: torch.Tensor, k: int, beta: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose ``k`` of ``n = len(losses)`` indices, harder samples more often.

    Args:
        losses: 1-D tensor of per-sample losses (any float dtype, any device). Losses must be
            finite; a NaN sorts as the largest loss. :class:`~smartloader.SmartLoader` never
            passes non-finite losses here: it falls back to a uniform draw instead.
        k: how many indices to return, ``0 <= k <= n``.
        beta: hardness, ``>= 0``. 0 is uniform; 1 is the paper's default; large values approach
            greedy top-k, which the paper's ablation shows hurts accuracy.
        generator: the ``torch.Generator`` all randomness comes from (on ``losses.device``);
            ``None`` uses torch's default generator.

    Returns:
        A ``LongTensor`` of ``k`` unique indices into ``losses``, sorted ascending (so the chosen
        samples keep their pool order), on ``losses.device``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> idx = ranked_multinomial(torch.tensor([0.1, 2.0, 0.5, 3.0]), k=2, beta=1.0, generator=g)
        >>> idx.shape, idx.unique().numel()
        (torch.Size([2]), 2)
    """
    if losses.dim() != 1:
        raise ValueError(f"losses must be 1-D (one loss per sample), got shape {tuple(losses.shape)}")
    n = losses.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k must be an integer in [0, {n}], got {k!r}")
    if not beta >= 0:  # also rejects NaN
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if k == n:
        return torch.arange(n, device=losses.device)
    return gumbel_top_k(ranked_log_weights(losses, float(beta)), k, generator)


def uniform_choice(n: int, k: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """``k`` of ``n`` indices uniformly without replacement, sorted ascending."""
    if not 0 <= k <= n:
        raise ValueError(f"k must be an integer in [0, {n}], got {k!r}")
    return torch.randperm(n, generator=generator, device=device)[:k].sort().values

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from smartloader import ranked_multinomial


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data(), beta=st.floats(0, 20), seed=st.integers(0, 2**31))
def test_k_unique_in_range_sorted(n, data, beta, seed):
    k = data.draw(st.integers(0, n))
    losses = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    idx = ranked_multinomial(losses, k, beta, torch.Generator().manual_seed(seed))
    assert idx.dtype == torch.int64 and idx.shape == (k,)
    assert idx.unique().numel() == k
    assert (idx >= 0).all() and (idx < n).all()
    assert torch.equal(idx, idx.sort().values)


def _chi_square(counts: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


def test_beta_zero_is_uniform_chi_square():
    n, k, trials = 20, 5, 4000
    g = torch.Generator().manual_seed(1)
    losses = torch.arange(n, dtype=torch.float32)  # strongly ordered: uniform must ignore it
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[ranked_multinomial(losses, k, 0.0, g)] += 1
    expected = torch.full((n,), trials * k / n)
    # chi-square with 19 dof: the 0.999 quantile is 43.8
    assert _chi_square(counts, expected) < 43.8


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_single_draw_matches_eq_4_4(beta):
    """k = 1: P(i) = ((rank_i + 1) / n) ** beta / sum, exactly Eq. 4.4's weights."""
    n, trials = 8, 40000
    losses = torch.tensor([0.3, 2.0, 0.1, 5.0, 1.0, 0.7, 3.0, 0.2])
    ranks = losses.argsort().argsort().float()
    w = ((ranks + 1) / n) ** beta
    p = w / w.sum()
    g = torch.Generator().manual_seed(2)
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[ranked_multinomial(losses, 1, beta, g)] += 1
    freq = counts / trials
    se = (p * (1 - p) / trials).sqrt()
    assert ((freq - p).abs() < 4 * se).all(), (freq, p)


def test_frequency_increases_with_rank():
    n, k, trials = 16, 4, 6000
    g = torch.Generator().manual_seed(3)
    losses = torch.linspace(0, 1, n).flip(0)  # index 0 is the hardest
    counts = torch.zeros(n)
    for _ in range(trials):
        counts[ranked_multinomial(losses, k, 1.0, g)] += 1
    by_rank = counts.flip(0)  # ascending loss rank
    # monotone up to sampling noise: compare quarters
    q = by_rank.view(4, 4).sum(1)
    assert q[0] < q[1] < q[2] < q[3]
    assert counts.sum() == trials * k


def test_large_beta_does_not_fail_and_prefers_hardest():
    losses = torch.arange(1000.0)
    idx = ranked_multinomial(losses, 10, 5000.0, torch.Generator().manual_seed(0))
    assert torch.equal(idx, torch.arange(990, 1000))


def test_deterministic_given_generator():
    losses = torch.randn(64, generator=torch.Generator().manual_seed(0))
    a = ranked_multinomial(losses, 16, 1.0, torch.Generator().manual_seed(7))
    b = ranked_multinomial(losses, 16, 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(3, 2), 1, 1.0), "must be 1-D"),
    ((torch.zeros(3), 4, 1.0), "k must be an integer in \\[0, 3\\]"),
    ((torch.zeros(3), 1, -0.5), "beta must be >= 0, got -0.5"),
    ((torch.zeros(3), 1, math.nan), "beta must be >= 0"),
])
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        ranked_multinomial(*args)

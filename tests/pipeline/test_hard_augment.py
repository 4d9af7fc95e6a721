"""Hard Augment: the planted hardest view pair is found and gathered at full resolution."""
from __future__ import annotations

import pytest
import torch

from smartloader.errors import ConfigError
from smartloader.pipeline.hard_augment import (HardAugment, build_hard_augment, gather_views,
                                               hardest_pairs, score_view_pairs, view_pairs)


def test_view_pairs_order():
    assert view_pairs(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    with pytest.raises(ValueError):
        view_pairs(1)


def test_hardest_pairs_exact_and_ties():
    losses = torch.tensor([[0.1, 0.2, 0.3, 0.9, 0.0, 0.1],
                           [5.0, 1.0, 1.0, 1.0, 1.0, 5.0]])
    assert hardest_pairs(losses, 4).tolist() == [[1, 2], [0, 1]]
    with pytest.raises(ValueError, match=r"\[n, 6\]"):
        hardest_pairs(torch.zeros(2, 5), 4)


def _model():
    # Embedding: BatchNorm (to check it is left alone), then global average pooling.
    return torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())


def _planted_views(n=3, m=5, size=32):
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, 1, 3, size, size, generator=g).expand(n, m, 3, size, size).clone()
    views = base + 0.01 * torch.randn(n, m, 3, size, size, generator=g)
    planted = [(1, 3), (0, 4), (2, 4)][:n] if m == 5 else [(0, 2), (1, 2)][:n]
    for i, (a, b) in enumerate(planted):
        views[i, a] += 1.0          # push the two views apart
        views[i, b] -= 1.0
    return views, planted


def pair_distance(za, zb):
    return ((za - zb) ** 2).sum(1)


def test_score_view_pairs_finds_planted_pair_at_low_resolution():
    views, planted = _planted_views()
    model = _model().train()
    stats = model[0].running_mean.clone()
    losses = score_view_pairs(model, views, pair_distance, resolution=8)
    assert losses.shape == (3, 10)
    assert hardest_pairs(losses, 5).tolist() == [list(p) for p in planted]
    assert torch.equal(model[0].running_mean, stats) and model.training and model[0].training
    assert losses.requires_grad is False


def test_resolution_is_used():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x.mean((2, 3))

    views, _ = _planted_views(n=2, m=3, size=32)
    score_view_pairs(Probe(), views, pair_distance, resolution=8)
    score_view_pairs(Probe(), views, pair_distance, resolution=None)
    assert seen == [(6, 3, 8, 8), (6, 3, 32, 32)]


def test_hard_augment_gathers_full_resolution_views():
    views, planted = _planted_views()
    hard = build_hard_augment({"resolution": 8})
    a, b, pairs = hard(_model(), views, pair_distance)
    assert a.shape == (3, 3, 32, 32) and b.shape == (3, 3, 32, 32)
    for i, (pa, pb) in enumerate(planted):
        assert torch.equal(a[i], views[i, pa]) and torch.equal(b[i], views[i, pb])
    a2, b2 = gather_views(views, pairs)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    assert isinstance(hard, HardAugment) and hard.state_dict() == {}


def test_build_hard_augment_errors():
    with pytest.raises(ConfigError, match=r"^h.resolution: must be >= 1"):
        build_hard_augment({"resolution": 0}, "h")
    with pytest.raises(ConfigError, match=r"^h.m: unknown key"):
        build_hard_augment({"m": 4}, "h")
    assert build_hard_augment({"resolution": None}).resolution is None

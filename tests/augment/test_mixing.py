"""MixUp / CutMix after selection, and the soft-target loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from smartloader.errors import ConfigError
from smartloader.augment.mixing import (CutMix, MixUp, build_batch_transform, cutmix, mixup,
                                        one_hot_targets, sample_lambda, soft_cross_entropy)


def test_mixup_exact_for_fixed_lambda_and_perm():
    x = torch.tensor([[1.0, 1.0], [3.0, 5.0], [0.0, 2.0]])
    y = torch.tensor([0, 2, 1])
    perm = torch.tensor([1, 2, 0])
    xm, t = mixup(x, y, num_classes=3, lam=0.75, perm=perm)
    assert torch.allclose(xm, 0.75 * x + 0.25 * x[perm])
    expected = torch.tensor([[0.75, 0.0, 0.25], [0.0, 0.25, 0.75], [0.25, 0.75, 0.0]])
    assert torch.allclose(t, expected)
    assert torch.allclose(t.sum(1), torch.ones(3))


def test_mixup_random_rows_sum_to_one_and_reproducible():
    x = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 10
    a = mixup(x, y, 0.2, 10, torch.Generator().manual_seed(7))
    b = mixup(x, y, 0.2, 10, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[1].shape == (16, 10) and torch.allclose(a[1].sum(1), torch.ones(16))


def test_sample_lambda_uses_only_the_generator():
    before = torch.get_rng_state()
    lams = [sample_lambda(0.2, torch.Generator().manual_seed(s)) for s in range(200)]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(0.0 <= v <= 1.0 for v in lams)
    # Beta(0.2, 0.2) is U-shaped: most mass near 0 or 1.
    assert sum(v < 0.1 or v > 0.9 for v in lams) > 100
    assert sample_lambda(1.0, torch.Generator().manual_seed(3)) == \
        sample_lambda(1.0, torch.Generator().manual_seed(3))


def test_cutmix_exact_for_fixed_box():
    x = torch.arange(4.0).reshape(4, 1, 1, 1).expand(4, 1, 4, 4).clone()
    y = torch.tensor([0, 1, 2, 3])
    perm = torch.tensor([3, 0, 1, 2])
    out, t = cutmix(x, y, num_classes=4, perm=perm, box=(1, 1, 2, 2))
    assert torch.equal(out[0, 0, 1:3, 1:3], torch.full((2, 2), 3.0))
    assert float(out[0].sum()) == 3.0 * 4   # only the box changed (image 0 is zeros)
    assert torch.allclose(t[0], torch.tensor([0.75, 0.0, 0.0, 0.25]))
    assert torch.allclose(t.sum(1), torch.ones(4))


def test_cutmix_target_weight_equals_pixel_fraction():
    g = torch.Generator().manual_seed(11)
    n, h, w = 8, 10, 12
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 2, h, w).clone()
    y = torch.arange(n)
    for _ in range(20):
        out, t = cutmix(x, y, 1.0, n, g)
        for i in range(n):
            own = float((out[i, 0] == i).float().mean())
            assert t[i, i] == pytest.approx(own, abs=1e-6) or t[i].max() == pytest.approx(1.0)
        assert torch.allclose(t.sum(1), torch.ones(n))


def test_soft_cross_entropy_matches_index_form_and_torch():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 3, 1, 1, 2])
    hard = soft_cross_entropy(logits, y)
    assert torch.allclose(hard, soft_cross_entropy(logits, one_hot_targets(y, 4)), atol=1e-6)
    soft = torch.softmax(torch.randn(5, 4), 1)
    assert torch.allclose(soft_cross_entropy(logits, soft),
                          F.cross_entropy(logits, soft, reduction="none"), atol=1e-6)
    assert hard.shape == (5,)


def test_transforms_from_yaml():
    x = torch.randn(6, 3, 8, 8)
    y = torch.arange(6) % 3
    mix = build_batch_transform({"type": "mixup", "alpha": 0.2, "num_classes": 3})
    cut = build_batch_transform({"type": "cutmix", "num_classes": 3}, "b")
    assert type(mix) is MixUp and mix.alpha == 0.2
    assert type(cut) is CutMix and cut.alpha == 1.0
    for tr in (mix, cut):
        xo, t = tr(x, y, torch.Generator().manual_seed(0))
        assert xo.shape == x.shape and t.shape == (6, 3)
        assert torch.allclose(t.sum(1), torch.ones(6))


@pytest.mark.parametrize("mapping, message", [
    ({"type": "mixup", "alpha": 0}, "t.alpha: must be > 0"),
    ({"type": "mixup", "num_classes": 1}, "t.num_classes: must be >= 2"),
    ({"type": "mixup", "prob": 0.5}, "t.prob: unknown key"),
    ({"type": "cutout"}, "t.type: must be one of"),
])
def test_build_batch_transform_errors(mapping, message):
    with pytest.raises(ConfigError) as err:
        build_batch_transform(mapping, "t")
    assert str(err.value).startswith(message)

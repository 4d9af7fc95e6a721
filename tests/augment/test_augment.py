"""Batched augmentations: shape/dtype/device, determinism, m = 0 identity, monotone in m."""
import pytest
import torch

from smartloader.augment import (OPS, BatchAugment, apply_op, crop_boxes, rand_augment,
                                 random_hflip, random_resized_crop, resize_batch)
from smartloader.common.shared_value import SharedValue


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(dtype=torch.uint8, n=6, h=32, w=40):
    g = gen(123)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g)
    return torch.rand(n, 3, h, w, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_resize_batch_keeps_dtype(dtype):
    x = images(dtype)
    y = resize_batch(x, 16)
    assert y.shape == (6, 3, 16, 16) and y.dtype == dtype and y.device == x.device
    assert resize_batch(x, (32, 40)) is x
    z = resize_batch(x, (8, 10))
    assert z.shape == (6, 3, 8, 10)


def test_resize_batch_is_antialiased():
    # A 1-px checkerboard averages to mid-grey when antialiased; plain bilinear would alias.
    x = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float()[None, None]
    y = resize_batch(x, 8)
    assert torch.allclose(y, torch.full_like(y, 0.5), atol=0.02)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("fn", ["rrc", "flip", "randaug", "batch"])
def test_shape_dtype_device_and_determinism(dtype, fn):
    x = images(dtype)
    run = {
        "rrc": lambda g: random_resized_crop(x, 24, g),
        "flip": lambda g: random_hflip(x, g),
        "randaug": lambda g: rand_augment(x, g, 7.0, num_ops=2),
        "batch": lambda g: BatchAugment(24, magnitude=6.0)(x, g),
    }[fn]
    a, b, c = run(gen(1)), run(gen(1)), run(gen(2))
    expected = (6, 3, 24, 24) if fn in ("rrc", "batch") else tuple(x.shape)
    assert a.shape == expected and a.dtype == dtype and a.device == x.device
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_input_is_not_modified():
    x = images(torch.float32)
    before = x.clone()
    rand_augment(x, gen(), 9.0, num_ops=3)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_magnitude_zero_is_identity(dtype):
    x = images(dtype)
    for name in OPS:
        assert torch.equal(apply_op(x, name, 0.0), x), name
    assert torch.equal(rand_augment(x, gen(), 0.0, num_ops=3), x)


def _change(x, y):
    return (x.float() - y.float()).abs().mean().item()


@pytest.mark.parametrize("name", list(OPS))
def test_stronger_magnitude_changes_more(name):
    x = images(torch.uint8, n=4, h=48, w=48)
    changes = [_change(x, apply_op(x, name, m)) for m in (2.0, 5.0, 10.0)]
    assert 0 < changes[0] < changes[1] < changes[2], changes


def test_rand_augment_stronger_changes_more_on_average():
    x = images(torch.float32, n=32)
    weak = _change(x, rand_augment(x, gen(5), 2.0))
    strong = _change(x, rand_augment(x, gen(5), 9.0))
    assert strong > weak > 0


def test_crop_boxes_follow_magnitude_and_stay_inside():
    full = crop_boxes(100, 0.0, gen())
    assert torch.allclose(full, torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(100, 4))
    boxes = crop_boxes(2000, 5.0, gen())
    area = boxes[:, 2] * boxes[:, 3]
    assert area.min() >= 0.08 * 0.99 - 1e-6 and area.max() <= 1.0 + 1e-6
    assert (boxes[:, 0].abs() + boxes[:, 2] <= 1.0 + 1e-6).all()
    assert (boxes[:, 1].abs() + boxes[:, 3] <= 1.0 + 1e-6).all()
    strong = crop_boxes(2000, 10.0, gen())
    assert (strong[:, 2] * strong[:, 3]).mean() < area.mean()


def test_rrc_magnitude_zero_is_plain_resize_of_whole_image():
    x = images(torch.float32, h=16, w=16)
    y = random_resized_crop(x, 16, gen(), magnitude=0.0)
    assert torch.allclose(y, x, atol=1e-5)


def test_hflip_flips_about_half():
    x = torch.arange(4.0).expand(1000, 1, 1, 4)
    y = random_hflip(x, gen())
    flipped = (y[:, 0, 0, 0] == 3.0).float().mean().item()
    assert 0.4 < flipped < 0.6
    assert torch.equal(random_hflip(x, gen(), p=0.0), x)


def test_batch_augment_reads_shared_value():
    m = SharedValue(0.0)
    aug = BatchAugment(16, magnitude=m, flip=False)
    x = images(torch.float32, h=16, w=16)
    assert torch.allclose(aug(x, gen()), x, atol=1e-5)  # m = 0: whole-image crop, no ops
    m.set(8.0)
    assert _change(x, aug(x, gen())) > 0.05


def test_rand_augment_rejects_bad_arguments():
    x = images()
    with pytest.raises(ValueError):
        rand_augment(x, gen(), 11.0)
    with pytest.raises(ValueError):
        rand_augment(x, gen(), 5.0, ops=("blur",))

"""DALI adapter with a real CPU pipeline over small PNG/JPEG files in tmp_path (no mocks).

Each image is one constant colour that encodes its dataset index, so after any crop, resize
or flip a batch can be checked against its indices.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nvidia.dali")
Image = pytest.importorskip("PIL.Image")
import torch  # noqa: E402

from smartloader.adapters import Capabilities, check_capabilities  # noqa: E402
from smartloader.adapters.dali import DALIAdapter, batches_per_epoch, build_classification_pipeline
from smartloader.errors import ConfigError  # noqa: E402

N = 41                                        # odd, so two shards differ in size


def colour(i):
    return (6 * i) % 256, (9 * i + 40) % 256, 120


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dali")
    files, labels = [], []
    for i in range(N):
        image = np.empty((24 + i % 7, 30 + i % 4, 3), dtype=np.uint8)
        image[:] = colour(i)
        path = root / (f"{i:03d}.png" if i % 2 else f"{i:03d}.jpg")
        Image.fromarray(image).save(path, quality=95)
        files.append(str(path))
        labels.append(i % 5)
    return files, labels


def plain(**kw):
    """Pixel values out unchanged (mean 0, std 1) so colours can be compared."""
    return dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_threads=1, **kw)


def epoch_of(adapter):
    return [(b["index"].clone(), b["image"].clone(), b["label"].clone()) for b in adapter]


def triples(adapter):
    """The adapter's dict batches as ``(index, image, label)``."""
    for b in adapter:
        assert set(b) == {"image", "label", "index"}
        yield b["index"], b["image"], b["label"]


def test_batches_have_indices_images_and_labels(dataset):
    files, labels = dataset
    pipe = build_classification_pipeline(files, labels, 8, size_fn=lambda b, e: 16,
                                         **plain(seed=1))
    adapter = DALIAdapter(pipe, labels=labels)
    assert len(adapter) == 6 == batches_per_epoch(N, 8)
    batches = epoch_of(adapter)
    assert [len(b[0]) for b in batches] == [8] * 5 + [1]
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(range(N))
    for index, image, label in batches:
        assert image.shape == (len(index), 3, 16, 16) and image.dtype == torch.float32
        assert torch.equal(label, index % 5)
        for i, img in zip(index.tolist(), image):
            want = torch.tensor(colour(i), dtype=torch.float32).view(3, 1, 1)
            assert (img - want).abs().max() <= 3, f"index {i}"   # JPEG is lossy by a little


def test_two_shards_cover_every_sample_once_per_epoch(dataset):
    files, labels = dataset
    adapters = [DALIAdapter(build_classification_pipeline(
                    files, labels, 6, size_fn=lambda b, e: 8, shard_id=s, num_shards=2,
                    **plain(seed=7)), labels=labels) for s in (0, 1)]
    orders = []
    for epoch in range(3):
        per_shard = [torch.cat([b[0] for b in epoch_of(a)]) for a in adapters]
        assert sorted(torch.cat(per_shard).tolist()) == list(range(N)), f"epoch {epoch}"
        assert sorted(len(s) for s in per_shard) == [20, 21]
        orders.append(torch.cat(per_shard))
    assert not torch.equal(orders[0], orders[1])  # reshuffled every epoch


def test_size_follows_the_schedule_every_batch_with_no_lag(dataset):
    files, labels = dataset
    files, labels = files[:40], labels[:40]   # 5 full batches of 8, no partial one

    def size(batch, epoch):
        return ([16, 24, 32][batch % 3] + 8 * epoch, 12 + 4 * (batch % 2))

    pipe = build_classification_pipeline(files, labels, 8, size_fn=size, **plain(seed=3))
    adapter = DALIAdapter(pipe, labels=labels)
    step = 0
    for epoch in range(3):
        for index, image, label in triples(adapter):
            assert tuple(image.shape[-2:]) == size(step, epoch), f"step {step}"
            step += 1
    assert step == 15


def test_magnitude_changes_per_batch(dataset):
    files, labels = dataset
    files, labels = files[1::2], labels[1::2]  # PNG only: exact colours

    def magnitude(batch, epoch):
        return float(batch % 2)               # 0, 1, 0, 1, ...

    pipe = build_classification_pipeline(files, labels, 5, size_fn=lambda b, e: 20,
                                         magnitude_fn=magnitude,
                                         **plain(seed=5, random_area=(1.0, 1.0)))
    for step, (index, image, label) in enumerate(triples(DALIAdapter(pipe, labels=labels))):
        flat = image.flatten(2)               # [B, 3, H*W]
        constant = ((flat.max(2).values - flat.min(2).values) == 0).all(1)
        if step % 2 == 0:
            assert constant.all(), f"step {step}: m=0 must leave constant images constant"
        else:                                 # rotation corners and brightness change pixels
            assert (~constant).sum() >= 3, f"step {step}"


def test_capabilities(dataset):
    files, labels = dataset
    pipe = build_classification_pipeline(files, labels, 8, size_fn=lambda b, e: 8,
                                         **plain())
    caps = DALIAdapter(pipe, labels=labels).capabilities
    check_capabilities(caps, {"resolution": {"changes": "iteration", "step": 3},
                              "magnitude": "iteration", "sample_ids": True,
                              "distributed": True}, "dali")
    fixed = Capabilities(resolution="iteration", magnitude="never", sample_ids=True)
    with pytest.raises(ConfigError, match=r"^magnitude: the dali adapter cannot change"):
        check_capabilities(fixed, {"magnitude": "epoch"}, "dali")

"""FFCV adapter against a real .beton written in tmp_path (no mocks).

Every image is a constant colour that encodes its dataset index, so whatever crop, resize
or flip FFCV applies, a batch can be checked against the ground truth by index.
"""
from __future__ import annotations

import numpy as np
import pytest

ffcv = pytest.importorskip("ffcv")
import torch  # noqa: E402

from smartloader.adapters import change_level, check_capabilities  # noqa: E402
from smartloader.adapters.ffcv import FFCVAdapter, write_beton  # noqa: E402
from smartloader.errors import ConfigError  # noqa: E402

# Building a second Loader in one process makes numba print a finalizer KeyError
# (numba/core/dispatcher.py); it is harmless noise, see docs/adapters-ffcv.md.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

N = 64


def colour(i: int) -> tuple[int, int, int]:
    return (4 * i) % 256, (7 * i + 11) % 256, 200


def label_of(i: int) -> int:
    return i % 10


class ConstantImages:
    """64 images of varying size (20..27 x 24..31), each one constant colour."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        image = np.empty((20 + i % 8, 24 + i % 5 * 2, 3), dtype=np.uint8)
        image[:] = colour(i)
        return image, label_of(i)


@pytest.fixture(scope="module")
def beton(tmp_path_factory):
    path = tmp_path_factory.mktemp("ffcv") / "tiny.beton"
    write_beton(str(path), ConstantImages())
    return str(path)


def triples(adapter):
    """The adapter's dict batches as ``(index, image, label)``."""
    for b in adapter:
        assert set(b) == {"image", "label", "index"}
        yield b["index"], b["image"], b["label"]


def assert_matches_truth(index, image, label):
    assert index.dtype == torch.long and label.dtype == torch.long
    assert torch.equal(label, index % 10)
    for i, img in zip(index.tolist(), image):
        expected = torch.tensor(colour(i), dtype=torch.uint8).view(3, 1, 1)
        assert torch.equal(img, expected.expand_as(img)), f"image for index {i} is wrong"


@pytest.mark.slow
def test_batches_have_indices_images_and_labels(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=10, resolution=16, seed=3)
    assert len(adapter) == 7
    batches = list(triples(adapter))
    assert [len(b[0]) for b in batches] == [10] * 6 + [4]
    seen = torch.cat([b[0] for b in batches])
    assert sorted(seen.tolist()) == list(range(N))
    for index, image, label in batches:
        assert image.shape == (len(index), 3, 16, 16) and image.dtype == torch.uint8
        assert_matches_truth(index, image, label)


def test_held_batches_survive_ffcv_buffer_reuse(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=8, resolution=12, batches_ahead=1)
    held = list(triples(adapter))                     # keep every batch of the epoch
    assert len(held) == 8
    for index, image, label in held:
        assert_matches_truth(index, image, label)

    # Why the adapter clones: a held raw batch is overwritten, consistently in all its
    # fields, by the batch that reuses its ring slot (batches_ahead + 2 = 3 slots).
    raw_it = iter(adapter.loader)
    raw = list(raw_it)
    wanted = [torch.as_tensor(raw_it.order[b * 8:(b + 1) * 8]) for b in range(len(raw))]
    stale = [b for b, batch in enumerate(raw)
             if not torch.equal(batch[2].reshape(-1).long(), wanted[b].long())]
    assert stale and stale[-1] < len(raw) - 1


def test_resolution_changes_at_the_next_epoch_only(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=16, resolution=16)
    sizes = []
    for batch_no, (index, image, label) in enumerate(triples(adapter)):
        if batch_no == 0:
            adapter.set_resolution(24)        # mid-epoch: ignored until the next iter()
        sizes.append(tuple(image.shape[-2:]))
    assert sizes == [(16, 16)] * 4
    assert adapter.resolution == (24, 24)
    second = list(triples(adapter))
    assert [tuple(b[1].shape[-2:]) for b in second] == [(24, 24)] * 4
    for batch in second:
        assert_matches_truth(*batch)


def test_resolution_now_restarts_on_the_remaining_order(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=16, resolution=16)
    adapter.set_epoch(5)
    expected_order = [b[0] for b in triples(adapter)]
    adapter.set_epoch(5)
    sizes, indices = [], []
    for batch_no, (index, image, label) in enumerate(triples(adapter)):
        if batch_no == 1:
            adapter.set_resolution((20, 12), now=True)
        sizes.append(tuple(image.shape[-2:]))
        indices.append(index)
        assert_matches_truth(index, image, label)
    assert sizes == [(16, 16), (16, 16), (20, 12), (20, 12)]
    assert torch.equal(torch.cat(indices), torch.cat(expected_order))


def test_set_epoch_replays_an_epoch_order(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=16, resolution=8, seed=1)
    first = torch.cat([b[0] for b in triples(adapter)])
    second = torch.cat([b[0] for b in triples(adapter)])
    adapter.set_epoch(0)
    replay = torch.cat([b[0] for b in triples(adapter)])
    assert torch.equal(first, replay)
    assert not torch.equal(first, second)


@pytest.mark.slow
def test_abandoned_epoch_thread_is_joined(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=4, resolution=8, batches_ahead=1)
    it = iter(adapter)
    next(it)
    thread = adapter._current
    assert thread is not None and thread.is_alive()
    it.close()                                # what `break` in a for loop does
    assert not thread.is_alive()
    next(iter(adapter))                       # a new epoch after an abandoned one works
    adapter.close()
    assert adapter._current is None


def test_indices_from_traversal_order_without_index_field(beton):
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor, ToTorchImage

    loader = Loader(beton, batch_size=10, num_workers=1, order=OrderOption.RANDOM, seed=2,
                    drop_last=False,
                    pipelines={"image": [CenterCropRGBImageDecoder((8, 8), 1.0), ToTensor(),
                                         ToTorchImage()],
                               "label": [IntDecoder(), ToTensor()],
                               "index": None})
    adapter = FFCVAdapter(loader, names=("image", "label"))
    batches = list(triples(adapter))
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(range(N))
    for batch in batches:
        assert_matches_truth(*batch)


def test_capabilities_reject_a_mid_epoch_resolution_schedule(beton):
    adapter = FFCVAdapter.from_beton(beton, batch_size=16, resolution=16)
    caps = adapter.capabilities
    assert (caps.resolution, caps.magnitude, caps.sample_ids) == ("epoch", "never", True)
    per_step = [16] * 6 + [24] * 6            # changes at step 6; an epoch is 4 steps
    level, step = change_level(per_step, steps_per_epoch=len(adapter))
    with pytest.raises(ConfigError, match=r"^resolution: the ffcv adapter .* at step 6"):
        check_capabilities(caps, {"resolution": {"changes": level, "step": step}}, "ffcv")
    check_capabilities(caps, {"resolution": change_level([16] * 4 + [24] * 4, 4)[0]}, "ffcv")

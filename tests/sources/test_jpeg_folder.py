"""JPEGFolder on real JPEG files written with Pillow: layout, full and scaled decoding,
DataLoader workers, unreadable files."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from smartloader.sources import (CorruptImageError, CorruptImageWarning, JPEGFolder, decode,
                                 draft_size, resize_square)


def write_jpeg(path, width: int, height: int, seed: int = 0, mode: str = "RGB") -> str:
    """A JPEG with structure (two gradients, a bright rectangle) and a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([255 * xx / width, 255 * yy / height,
                    np.full_like(xx, 40 + 30 * (seed % 5))], -1)
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
    img[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(150, 256, 3)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(img)
    if mode != "RGB":
        image = image.convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, quality=90)
    return str(path)


def pil_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


@pytest.fixture
def folder(tmp_path):
    """Three classes of JPEGs of assorted sizes (one greyscale), in unsorted creation order,
    plus files that are not samples."""
    root = tmp_path / "data"
    write_jpeg(root / "zebra" / "b.jpg", 400, 300, seed=1)
    write_jpeg(root / "zebra" / "a.JPG", 300, 500, seed=2)
    write_jpeg(root / "ant" / "sub" / "c.jpeg", 260, 260, seed=3)
    write_jpeg(root / "ant" / "a.jpg", 333, 277, seed=4, mode="L")
    write_jpeg(root / "moth" / "x.jpg", 500, 256, seed=5)
    Image.new("RGB", (8, 8)).save(root / "moth" / "icon.png")   # other suffix: not a sample
    (root / "notes.txt").write_text("files in the root are not samples")
    os.makedirs(root / ".cache" / "junk")                      # hidden: not a class
    write_jpeg(root / ".cache" / "junk" / "j.jpg", 64, 64)
    return root


def test_layout_classes_labels_and_sample_order(folder):
    ds = JPEGFolder(folder)
    assert ds.classes == ["ant", "moth", "zebra"]
    assert ds.class_to_idx == {"ant": 0, "moth": 1, "zebra": 2}
    rel = [(os.path.relpath(p, folder), label) for p, label in ds.samples]
    assert rel == [("ant/a.jpg", 0), ("ant/sub/c.jpeg", 0), ("moth/x.jpg", 1),
                   ("zebra/a.JPG", 2), ("zebra/b.jpg", 2)]
    assert len(ds) == 5
    assert [ds[i][1:] for i in range(5)] == [(0, 0), (0, 1), (1, 2), (2, 3), (2, 4)]


def test_full_decode_equals_pillow_decode(folder):
    ds = JPEGFolder(folder)
    for i, (path, _) in enumerate(ds.samples):
        image, _, _ = ds[i]
        assert image.dtype == torch.uint8 and image.is_contiguous()
        assert torch.equal(image, chw(pil_rgb(path))), path
        assert torch.equal(decode(path), image)
    assert ds[0][0].shape == (3, 277, 333)   # the greyscale file comes back as RGB


def test_low_res_is_square_uint8_and_close_to_a_full_decode_resized_alike(folder):
    ds = JPEGFolder(folder)
    for size in (64, 32, 100):
        for i, (path, label) in enumerate(ds.samples):
            small, got_label, got_index = ds.low_res(i, size)
            assert small.shape == (3, size, size) and small.dtype == torch.uint8
            assert (got_label, got_index) == (label, i)
            with Image.open(path) as im:
                reference = chw(np.asarray(resize_square(im.convert("RGB"), size)))
            diff = (small.float() - reference.float()).abs().mean().item()
            assert diff < 3.0, (path, size, diff)   # measured 0.4-2.0 levels of 255


def test_resize_is_the_centred_square_of_the_shorter_side():
    # 400 x 200: red | green (the centred 200 x 200 square) | blue
    img = np.zeros((200, 400, 3), np.uint8)
    img[:, :100, 0] = 255
    img[:, 100:300, 1] = 255
    img[:, 300:, 2] = 255
    out = np.asarray(resize_square(Image.fromarray(img), 16)).astype(int)
    assert out.shape == (16, 16, 3)
    # only the centre survives, bar the filter's reach into the outer thirds at the edges
    assert (out[:, 1:-1] == (0, 255, 0)).all()
    assert (out[:, 0] == (32, 223, 0)).all() and (out[:, -1] == (0, 223, 32)).all()
    # a plain (stretching) resize would keep the red and blue thirds
    stretched = np.asarray(Image.fromarray(img).resize((16, 16), Image.Resampling.BILINEAR))
    assert stretched[:, 0, 0].min() > 200


def test_scaled_decoding_picks_the_largest_scale_that_keeps_both_sides(tmp_path):
    path = write_jpeg(tmp_path / "c" / "i.jpg", 400, 300)
    assert draft_size(path, 64) == (100, 75)     # 300 // 64 = 4: decoded at 1/4
    assert draft_size(path, 32) == (50, 38)      # 1/8 (sides rounded up)
    assert draft_size(path, 150) == (200, 150)   # 1/2
    assert draft_size(path, 200) == (400, 300)   # 300 // 200 = 1: full size
    assert draft_size(path, 1000) == (400, 300)  # smaller than asked: full size, upsampled
    # low_res really decodes at 1/4: it equals Pillow's own 1/4 decode resized, and differs
    # from resizing the full decode
    with Image.open(path) as im:
        im.draft("RGB", (64, 64))
        assert im.size == (100, 75)
        quarter = chw(np.asarray(resize_square(im.convert("RGB"), 64)))
    with Image.open(path) as im:
        full = chw(np.asarray(resize_square(im.convert("RGB"), 64)))
    small = JPEGFolder(tmp_path).low_res(0, 64)[0]
    assert torch.equal(small, quarter) and not torch.equal(small, full)
    assert decode(path, 1000).shape == (3, 1000, 1000)


class Describe:
    """A transform that reports what it was given."""

    def __call__(self, image):
        return image.mode, image.size


class SmallTensor:
    """A full-size transform to a batchable tensor: centred square at 48 px, float CHW."""

    def __call__(self, image):
        return chw(np.asarray(resize_square(image, 48))).float() / 255


def test_transform_gets_the_rgb_pil_image_and_low_res_skips_it(folder):
    ds = JPEGFolder(folder, Describe())
    assert ds[0] == (("RGB", (333, 277)), 0, 0)   # greyscale file, converted first
    assert ds[4] == (("RGB", (400, 300)), 2, 4)
    assert ds.low_res(4, 24)[0].shape == (3, 24, 24)


class LowRes(Dataset):
    """``dataset.low_res(i, size)`` as a dataset of its own."""

    def __init__(self, dataset: JPEGFolder, size: int):
        self.dataset, self.size = dataset, size

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset.low_res(i, self.size)


def _batches(dataset, workers: int):
    loader = DataLoader(dataset, batch_size=2, num_workers=workers,
                        timeout=60 if workers else 0)
    images, labels, index = zip(*loader)
    return torch.cat(images), torch.cat(labels), torch.cat(index)


@pytest.mark.parametrize("view", ["full", "low_res"])
def test_dataloader_workers_give_the_same_items_as_in_process(folder, view):
    ds = JPEGFolder(folder, SmallTensor())
    dataset = ds if view == "full" else LowRes(ds, 40)
    in_process = _batches(dataset, workers=0)
    in_workers = _batches(dataset, workers=2)
    assert in_process[0].shape == ((5, 3, 48, 48) if view == "full" else (5, 3, 40, 40))
    for a, b in zip(in_process, in_workers):
        assert torch.equal(a, b)
    assert in_workers[2].tolist() == [0, 1, 2, 3, 4]


@pytest.fixture
def broken(tmp_path):
    """Six samples; 1 is garbage bytes, 2 a truncated JPEG, 5 (the last) garbage."""
    root = tmp_path / "broken"
    paths = [write_jpeg(root / "a" / f"{k}.jpg", 120 + 10 * k, 100, seed=k) for k in range(6)]
    with open(paths[1], "wb") as fh:
        fh.write(b"this is not a JPEG" * 50)
    with open(paths[2], "r+b") as fh:
        fh.truncate(os.path.getsize(paths[2]) // 2)
    with open(paths[5], "wb") as fh:
        fh.write(os.urandom(300))
    return root, paths


@pytest.mark.parametrize("bad", [1, 2])
def test_unreadable_file_raises_naming_index_path_and_option(broken, bad):
    root, paths = broken
    ds = JPEGFolder(root)
    for read in (lambda: ds[bad], lambda: ds.low_res(bad, 32)):
        with pytest.raises(CorruptImageError) as err:
            read()
        message = str(err.value)
        assert f"image {bad} " in message and repr(paths[bad]) in message
        assert "on_corrupt='skip'" in message
    assert ds.corrupt == {}
    assert ds[0][2] == 0 and ds[3][2] == 3   # the readable ones still read


def test_unreadable_file_raises_through_dataloader_workers(broken):
    root, paths = broken
    loader = DataLoader(JPEGFolder(root, SmallTensor()), batch_size=2, num_workers=2,
                        timeout=60)
    with pytest.raises(CorruptImageError, match="image 1 ") as err:
        list(loader)
    assert paths[1] in str(err.value)


def test_skip_warns_once_per_file_counts_and_replaces_with_the_next_readable(broken):
    root, paths = broken
    ds = JPEGFolder(root, on_corrupt="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")   # so only JPEGFolder's own once-per-file rule acts
        image, label, index = ds.low_res(1, 32)
        assert index == 3 and label == 0
        assert torch.equal(image, ds.low_res(3, 32)[0])
        assert [str(w.message).split(" (")[0] for w in caught] == [
            "JPEGFolder: image 1", "JPEGFolder: image 2"]
        assert all(w.category is CorruptImageWarning for w in caught)
        assert "2 unreadable image(s) found so far in process" in str(caught[1].message)
        assert repr(paths[2]) in str(caught[1].message)
        caught.clear()
        assert ds[2][2] == 3 and ds[1][2] == 3   # known files: no new decode, no warning
        assert caught == []
        assert ds[5][2] == 0                     # the last one wraps around to 0
        assert len(caught) == 1 and "image 5 " in str(caught[0].message)
    assert ds.corrupt == {1: paths[1], 2: paths[2], 5: paths[5]}
    assert torch.equal(ds[5][0], ds[0][0])


def test_skip_with_every_file_unreadable_raises_instead_of_looping(tmp_path):
    for k in range(3):
        os.makedirs(tmp_path / "c", exist_ok=True)
        (tmp_path / "c" / f"{k}.jpg").write_bytes(b"junk" * k)
    ds = JPEGFolder(tmp_path, on_corrupt="skip")
    with pytest.warns(CorruptImageWarning), pytest.raises(CorruptImageError,
                                                          match="none of the 3 images"):
        ds[1]
    assert sorted(ds.corrupt) == [0, 1, 2]


class WithWarnings(Dataset):
    """Items of ``dataset`` and the warnings reading each raised, from inside the worker."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            item = self.dataset[i]
        return (*item, " | ".join(str(w.message) for w in caught))


def test_skip_in_dataloader_workers_finishes_with_the_replacements_and_reports(broken):
    root, paths = broken
    loader = DataLoader(WithWarnings(JPEGFolder(root, SmallTensor(), on_corrupt="skip")),
                        batch_size=2, num_workers=2, timeout=60)
    images, labels, index, messages = zip(*loader)
    assert torch.cat(index).tolist() == [0, 3, 3, 3, 4, 0]
    assert torch.cat(images).shape == (6, 3, 48, 48)
    reports = " | ".join(m for batch in messages for m in batch)
    for bad in (1, 2, 5):
        assert f"image {bad} ({paths[bad]!r})" in reports
    assert "found so far in DataLoader worker" in reports


def test_bad_arguments_name_the_value_and_the_fix(tmp_path, folder):
    with pytest.raises(ValueError, match=r"one of \('raise', 'skip'\), got 'ignore'"):
        JPEGFolder(folder, on_corrupt="ignore")
    with pytest.raises(FileNotFoundError, match="does not exist.*one sub-folder per class"):
        JPEGFolder(tmp_path / "nowhere")
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file"):
        JPEGFolder(tmp_path / "file.jpg")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        JPEGFolder(tmp_path / "empty")
    os.makedirs(tmp_path / "pngs" / "cat")
    Image.new("RGB", (8, 8)).save(tmp_path / "pngs" / "cat" / "a.png")
    with pytest.raises(FileNotFoundError,
                       match=r"no files ending in \('.jpg', '.jpeg'\).*1 .png.*extensions="):
        JPEGFolder(tmp_path / "pngs")
    assert len(JPEGFolder(tmp_path / "pngs", extensions=".png")) == 1
    os.makedirs(folder / "wasp")
    with pytest.raises(FileNotFoundError, match=r"\['wasp'\].*hold no files ending in"):
        JPEGFolder(folder)
    os.rmdir(folder / "wasp")
    with pytest.raises(ValueError, match="starting with a dot.*got 'jpg'"):
        JPEGFolder(folder, extensions="jpg")
    with pytest.raises(TypeError, match="transform must be callable"):
        JPEGFolder(folder, "resize")
    ds = JPEGFolder(folder)
    for size in (0, -3, 2.5, True, None):
        with pytest.raises(ValueError, match=f"positive integer.*got {size!r}"):
            ds.low_res(0, size)
    with pytest.raises(ValueError, match="got 0"):
        decode(ds.samples[0][0], 0)
    with pytest.raises(IndexError, match="index 5 out of range for 5 images"):
        ds[5]
    with pytest.raises(TypeError, match="index must be an integer"):
        ds["0"]

"""JPEG images in class sub-folders, decoded at full size or small with JPEG scaled decoding.

:class:`JPEGFolder` reads the ImageFolder layout (``root/<class>/<image>.jpg``; the class is
the sub-folder's name, classes sorted) and yields ``(image, label, index)``. Next to the
full-size ``dataset[i]`` it has :meth:`JPEGFolder.low_res`, which decodes a small square
copy for scoring a pool: libjpeg can decode straight to 1/2, 1/4 or 1/8 of the stored size
(the inverse DCT of each 8x8 block is computed at fewer points), which skips most of the
decode work, so only the chosen samples pay for a full decode.

:func:`decode` is the pure function behind both; :func:`draft_size` tells which size the
scaled decode of a file produces, :func:`resize_square` is the one resize ``low_res`` applies.
Nothing keeps a file open between calls, so a dataset is safe in DataLoader workers.
"""
from __future__ import annotations

import hashlib
import operator
import os
import struct
import warnings
from collections import Counter
from typing import Any, Callable

import numpy as np
import torch

try:
    from PIL import Image
except ImportError as exc:  # Pillow is an optional dependency of smartloader
    raise ImportError("smartloader.sources needs Pillow to decode JPEG files: "
                      "pip install 'smartloader[jpeg]' (or pip install pillow)") from exc

__all__ = ["JPEGFolder", "decode", "draft_size", "resize_square", "CorruptImageError",
           "CorruptImageWarning", "ON_CORRUPT"]

#: the values ``on_corrupt`` accepts
ON_CORRUPT = ("raise", "skip")

# What Pillow raises for a file that is not a readable image: garbage or truncated data
# (OSError, including UnidentifiedImageError), malformed headers (SyntaxError, struct.error,
# ValueError, EOFError) and images over Pillow's pixel limit. Only the decode is guarded, so
# an error in the caller's transform is never mistaken for a corrupt file.
_UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, struct.error,
               Image.DecompressionBombError)


class CorruptImageError(OSError):
    """An image file that could not be decoded; the message names its index and path."""


class CorruptImageWarning(UserWarning):
    """``on_corrupt="skip"`` replaced an unreadable image (one warning per file and process)."""


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer (the side in px of the square "
                         f"low-resolution image), got {size!r}")
    return int(size)


def resize_square(image: Image.Image, size: int) -> Image.Image:
    """``image`` resized to exactly ``size`` x ``size`` px: the centred square of side
    ``min(width, height)`` scaled to ``size`` in one bilinear (antialiased) resize.

    This is "shorter side to ``size``, then centre crop", the usual evaluation transform,
    done without an intermediate image, so the aspect ratio is kept and the result depends
    only on the pixels (deterministic)."""
    size = _check_size(size)
    w, h = image.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=box)


def _open_rgb(path: str | os.PathLike, size: int | None) -> Image.Image:
    """The decoded RGB image of ``path``: full size, or (``size`` given) scaled-decoded and
    resized to ``size`` x ``size``. The file is open only inside this call."""
    with open(path, "rb") as fh:
        image = Image.open(fh)
        if size is not None:
            # For a JPEG, libjpeg decodes at the largest of 1/1, 1/2, 1/4, 1/8 that keeps
            # both sides >= size; other formats ignore the draft and decode at full size.
            image.draft("RGB", (size, size))
        image.load()  # decodes now, while the file is open
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image if size is None else resize_square(image, size)


def _to_chw(image: Image.Image) -> torch.Tensor:
    # one plane per band: half the time of a HWC array permuted to contiguous CHW
    return torch.from_numpy(np.stack([np.asarray(band) for band in image.split()]))


def decode(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """The image at ``path`` as a ``uint8`` tensor ``[3, H, W]`` (RGB; greyscale and CMYK
    files are converted).

    ``size=None`` decodes at full size. An integer ``size`` decodes with JPEG scaled decoding
    (see :func:`draft_size`) and then :func:`resize_square`, giving ``[3, size, size]``.
    Pillow's errors for an unreadable file propagate; :class:`JPEGFolder` names the sample.
    """
    if size is not None:
        size = _check_size(size)
    return _to_chw(_open_rgb(path, size))


def draft_size(path: str | os.PathLike, size: int) -> tuple[int, int]:
    """``(width, height)`` of the scaled decode :func:`decode` does for ``size``, before its
    resize: the stored size divided (rounding up) by the largest of 1, 2, 4, 8 that keeps
    both sides >= ``size``. A 400 x 300 JPEG at ``size=64`` decodes at 1/4: ``(100, 75)``.
    Reads only the file's header."""
    size = _check_size(size)
    with open(path, "rb") as fh:
        image = Image.open(fh)
        image.draft("RGB", (size, size))
        return image.size


def _check_extensions(extensions: Any) -> tuple[str, ...]:
    try:
        exts = (extensions,) if isinstance(extensions, str) else tuple(extensions)
    except TypeError:
        exts = None
    if (not exts or not all(isinstance(e, str) and len(e) > 1 and e.startswith(".")
                            for e in exts)):
        raise ValueError(f"extensions must be file suffixes starting with a dot, e.g. "
                         f"('.jpg', '.jpeg'), got {extensions!r}")
    return tuple(e.lower() for e in exts)


def _scan(root: str, extensions: tuple[str, ...]) -> tuple[list[str], list[tuple[str, int]]]:
    """The sorted class names under ``root`` and every ``(path, label)``, in class order
    and, inside a class, in sorted path order (sub-folders of a class folder included)."""
    if not os.path.exists(root):
        raise FileNotFoundError(f"JPEGFolder: root {root!r} does not exist; pass the folder "
                                f"that holds one sub-folder per class")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"JPEGFolder: root {root!r} is a file, not a folder; pass "
                                 f"the folder that holds one sub-folder per class")
    classes = sorted(e.name for e in os.scandir(root)
                     if e.is_dir() and not e.name.startswith("."))
    example = f"{os.path.join(root, '<class>', '<image>')}{extensions[0]}"
    if not classes:
        raise FileNotFoundError(f"JPEGFolder: {root!r} has no class sub-folders (expected "
                                f"{example}, one sub-folder per class)")
    samples: list[tuple[str, int]] = []
    empty: list[str] = []
    others: Counter[str] = Counter()
    for label, name in enumerate(classes):
        found = 0
        for folder, dirs, files in os.walk(os.path.join(root, name), followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for file in sorted(files):
                if file.lower().endswith(extensions):
                    samples.append((os.path.join(folder, file), label))
                    found += 1
                elif not file.startswith("."):
                    others[os.path.splitext(file)[1].lower() or "(no suffix)"] += 1
        if not found:
            empty.append(name)
    if not samples:
        seen = ""
        if others:
            kinds = ", ".join(f"{n} {ext}" for ext, n in others.most_common(5))
            seen = f"; it holds other files ({kinds}): pass extensions=(...) to read them"
        raise FileNotFoundError(f"JPEGFolder: no files ending in {extensions} in the "
                                f"{len(classes)} class sub-folder(s) of {root!r} (expected "
                                f"{example}){seen}")
    if empty:
        raise FileNotFoundError(f"JPEGFolder: class sub-folder(s) {empty} of {root!r} hold no "
                                f"files ending in {extensions}; every sub-folder is a class, "
                                f"so remove the empty ones or add their images")
    return classes, samples


def _where() -> str:
    info = torch.utils.data.get_worker_info()
    if info is None:
        return f"process {os.getpid()}"
    return f"DataLoader worker {info.id} (process {os.getpid()})"


class JPEGFolder(torch.utils.data.Dataset):
    """A map-style dataset of the JPEG files under ``root/<class>/``.

    Args:
        root: the folder with one sub-folder per class. Sub-folder names, sorted, are the
            classes (label = position); files are searched recursively inside each class
            folder. Files directly in ``root`` and names starting with ``.`` are not samples.
        transform: called on the decoded RGB ``PIL.Image`` by ``dataset[i]``; without one,
            ``dataset[i]`` gives a ``uint8`` tensor ``[3, H, W]`` at the stored size.
            :meth:`low_res` never applies it.
        extensions: the file suffixes that are samples, compared case-insensitively
            (default ``.jpg`` and ``.jpeg``). Other image formats decode too (at full size:
            scaled decoding is JPEG's).
        on_corrupt: ``"raise"`` (default) raises :class:`CorruptImageError` naming the index
            and path of an unreadable file. ``"skip"`` returns the next readable sample in
            its place (index ``i + 1``, ``i + 2``, ... wrapping around), with that sample's
            own label and index, so the index always names the image returned; each
            unreadable file warns once per process (:class:`CorruptImageWarning`).

    Attributes:
        classes: the class names, sorted. ``class_to_idx``: name -> label.
        samples: ``(path, label)`` of every image, in class order, sorted paths inside.
        corrupt: ``{index: path}`` of the unreadable files *this process* met under
            ``"skip"``; ``len(dataset.corrupt)`` is their number. DataLoader workers hold
            copies of the dataset, so a worker's finds stay in that worker: each warning
            names the worker and its running count.

    ``dataset[i]`` returns ``(image, label, i)``; ``dataset.low_res(i, size)`` returns
    ``(uint8 [3, size, size], label, i)``.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable[[Image.Image], Any] | None
                 = None, *, extensions: tuple[str, ...] = (".jpg", ".jpeg"),
                 on_corrupt: str = "raise") -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"JPEGFolder: root must be a path (str or os.PathLike), "
                            f"got {type(root).__name__} {root!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"JPEGFolder: transform must be callable (it is called on a PIL "
                            f"image) or None, got {type(transform).__name__} {transform!r}")
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"JPEGFolder: on_corrupt must be one of {ON_CORRUPT}, "
                             f"got {on_corrupt!r}")
        self.root = os.fspath(root)
        self.transform = transform
        self.extensions = _check_extensions(extensions)
        self.on_corrupt = on_corrupt
        self.classes, self.samples = _scan(self.root, self.extensions)
        self.class_to_idx = {name: label for label, name in enumerate(self.classes)}
        self.corrupt: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"JPEGFolder(root={self.root!r}, {len(self.samples)} images, "
                f"{len(self.classes)} classes, on_corrupt={self.on_corrupt!r})")

    def cache_key(self) -> str:
        """What names this dataset's views in a view cache on disk
        (``pool_source.cache_dir``): a digest of every file's path under ``root``, size and
        modification time, the labels and ``on_corrupt``, so an added, removed or rewritten
        file gives a new key (one ``stat`` per file)."""
        h = hashlib.sha1(f"JPEGFolder:{self.on_corrupt}:{len(self.samples)}".encode())
        for path, label in self.samples:
            st = os.stat(path)
            h.update(f"{os.path.relpath(path, self.root)}\0{label}\0{st.st_size}\0"
                     f"{st.st_mtime_ns}\n".encode())
        return f"JPEGFolder-{h.hexdigest()}"

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        """``(image, label, index)`` at full size: ``transform(rgb_image)`` if the dataset has
        a transform, else a ``uint8`` tensor ``[3, H, W]``."""
        image, label, index = self._read(index, None)
        return (self.transform(image) if self.transform is not None else _to_chw(image),
                label, index)

    def low_res(self, index: int, size: int) -> tuple[torch.Tensor, int, int]:
        """``(uint8 [3, size, size], label, index)``: decoded with JPEG scaled decoding, then
        :func:`resize_square` (centred square, one bilinear resize). No transform."""
        size = _check_size(size)
        image, label, index = self._read(index, size)
        return _to_chw(image), label, index

    def _read(self, index: Any, size: int | None) -> tuple[Image.Image, int, int]:
        n = len(self.samples)
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"JPEGFolder index must be an integer, got "
                            f"{type(index).__name__} {index!r}") from None
        if not 0 <= i < n:
            raise IndexError(f"JPEGFolder index {i} out of range for {n} images (0..{n - 1})")
        skip = self.on_corrupt == "skip"
        for _ in range(n):  # at most one attempt per file: ends even if all are unreadable
            path, label = self.samples[i]
            if not (skip and i in self.corrupt):
                try:
                    return _open_rgb(path, size), label, i
                except _UNREADABLE as err:
                    if not skip:
                        raise CorruptImageError(
                            f"JPEGFolder: image {i} ({path!r}) cannot be decoded "
                            f"({type(err).__name__}: {err}); remove or replace the file, or "
                            f"pass on_corrupt='skip' to use the next readable image in its "
                            f"place") from err
                    self._found_corrupt(i, path, err)
            i = (i + 1) % n
        raise CorruptImageError(f"JPEGFolder: none of the {n} images under {self.root!r} can "
                                f"be decoded (on_corrupt='skip' found no readable replacement)")

    def _found_corrupt(self, index: int, path: str, err: BaseException) -> None:
        self.corrupt[index] = path
        warnings.warn(
            f"JPEGFolder: image {index} ({path!r}) cannot be decoded ({type(err).__name__}: "
            f"{err}); on_corrupt='skip' returns the next readable image in its place. "
            f"{len(self.corrupt)} unreadable image(s) found so far in {_where()}",
            CorruptImageWarning, stacklevel=4)

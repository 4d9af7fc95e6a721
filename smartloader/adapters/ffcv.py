"""FFCV adapter: ``{"image", "label", "index"}`` batches that are safe to keep, plus resolution per epoch.

Tested with ffcv 1.0.2 (built from the sdist, ``ffcv.__version__`` still says ``0.0.3rc1``),
numba 0.68.1, numpy 2.4.6, torch 2.13 CPU. What this module works around:

* FFCV hands out *views* into a ring of ``batches_ahead + 2`` buffers, so a batch kept while
  later ones are pulled gets overwritten. :class:`FFCVAdapter` clones every batch.
* A decoder's ``output_size`` is read when an epoch's buffers are allocated, i.e. at
  ``iter(loader)``; a change mid-epoch is ignored. :meth:`FFCVAdapter.set_resolution` applies
  at the next epoch, or immediately with ``now=True`` by restarting the epoch's iterator on
  the not-yet-consumed part of its order (costs a buffer allocation and a thread).
* FFCV has no ``set_epoch``; the order depends on ``loader.next_epoch``.
* The ``EpochIterator`` thread leaks if an epoch is abandoned; the adapter closes and joins it.
"""
from __future__ import annotations

import queue
import time
import weakref
from typing import Any, Iterator, Sequence

import numpy as np
import torch

import ffcv  # noqa: F401  (fail here, clearly, when ffcv is not installed)
from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import (CenterCropRGBImageDecoder, IntDecoder,
                                  RandomResizedCropRGBImageDecoder)
from ffcv.loader import Loader, OrderOption
from ffcv.loader.epoch_iterator import EpochIterator
from ffcv.transforms import RandomHorizontalFlip, ToDevice, ToTensor, ToTorchImage
from ffcv.writer import DatasetWriter

from smartloader.pipeline.capabilities import Capabilities

__all__ = ["write_beton", "FFCVAdapter"]


class _WithIndex:
    """``dataset[i] -> (image, label)`` seen as ``(image, label, i)`` for the writer."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, int]:
        image, label = self.dataset[i]
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"dataset[{i}] image must be uint8 HxWx3, "
                             f"got {image.dtype} {image.shape}")
        return image, int(label), i


def write_beton(path: str, dataset: Any, *, write_mode: str = "raw",
                max_resolution: int | None = None, jpeg_quality: int = 90,
                num_workers: int = 1) -> None:
    """Write ``dataset`` to an FFCV ``.beton`` with fields ``image``, ``label``, ``index``.

    ``dataset`` is any indexed dataset (``len`` and ``[i]``) returning
    ``(image uint8 HxWx3 numpy, label int)``. ``index`` stores ``i`` so every loaded batch
    carries its dataset indices. ``write_mode``: ``"raw"`` (exact pixels, larger file),
    ``"jpg"`` (lossy, what ImageNet setups use) or ``"smart"``/``"proportion"`` as in FFCV.
    ``max_resolution`` caps the longer side (pixels) when writing; ``None`` keeps sizes.
    """
    fields = {
        "image": RGBImageField(write_mode=write_mode, max_resolution=max_resolution,
                               jpeg_quality=jpeg_quality),
        "label": IntField(),
        "index": IntField(),
    }
    writer = DatasetWriter(str(path), fields, num_workers=num_workers)
    writer.from_indexed_dataset(_WithIndex(dataset))


def _find_decoder(loader: Loader, image_name: str) -> Any | None:
    spec = loader.pipeline_specs.get(image_name)
    decoder = getattr(spec, "decoder", None)
    return decoder if hasattr(decoder, "output_size") else None


def _as_size(resolution: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        size = (resolution, resolution)
    else:
        size = tuple(int(x) for x in resolution)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"resolution must be a positive int or (height, width), "
                         f"got {resolution!r}")
    return size


def _shutdown(it: EpochIterator, timeout: float = 10.0) -> None:
    """Stop an EpochIterator thread and wait for it.

    ``close()`` only sets an event the worker checks while its queue is full; a worker that
    reached the end blocks on ``put(None)`` forever, so drain the queue while joining.
    """
    it.close()
    deadline = time.monotonic() + timeout
    while it.is_alive() and time.monotonic() < deadline:
        try:
            while True:
                it.output_queue.get_nowait()
        except queue.Empty:
            pass
        it.join(0.05)


class FFCVAdapter:
    """Iterate an FFCV ``Loader`` as dicts ``{"image", "label": LongTensor[B], "index": LongTensor[B]}``.

    Dicts with keys ``image``/``label`` are what SmartLoader reads by default, so
    ``smartloader.wrap(adapter, model, config)`` needs no ``input_key``/``target_key``.

    ``loader`` must have outputs named ``image``, ``label`` and (preferably) ``index``, as
    written by :func:`write_beton`; other names via ``names``. Without an index output the
    indices come from the epoch's traversal order (batch ``b`` is ``order[b*B:(b+1)*B]``).
    ``decoder`` is the image decoder whose ``output_size`` sets the resolution; by default
    the one in the image pipeline is used when it has ``output_size``.

    Every tensor is cloned out of FFCV's ring buffers, so batches may be kept (e.g. a large
    scoring batch) while later ones load.

    Example::

        adapter = FFCVAdapter.from_beton("train.beton", batch_size=256, resolution=160)
        for epoch in range(epochs):
            adapter.set_epoch(epoch)
            adapter.set_resolution(res_for(epoch))    # applies at this iter()
            for batch in adapter:         # batch["image"], batch["label"], batch["index"]
                ...
    """

    #: name used in capability error messages
    adapter_name = "ffcv"

    def __init__(self, loader: Loader, decoder: Any | None = None, *,
                 names: Sequence[str] = ("image", "label", "index")) -> None:
        image_name, label_name, *rest = names
        self.loader = loader
        outputs = list(loader.pipeline_specs)
        for name in (image_name, label_name, *rest):
            if name not in outputs:
                raise ValueError(f"FFCV loader has no output {name!r} (outputs: {outputs})")
        self._pos_image = outputs.index(image_name)
        self._pos_label = outputs.index(label_name)
        self._pos_index = outputs.index(rest[0]) if rest else None
        self.decoder = decoder if decoder is not None else _find_decoder(loader, image_name)
        self._pending_size: tuple[int, int] | None = None
        self._restart_now = False
        self._current: EpochIterator | None = None
        self._smart: Any = None          # weakref to the SmartLoader driving this adapter
        self.epoch = loader.next_epoch

    @classmethod
    def from_beton(cls, path: str, batch_size: int, resolution: int | Sequence[int], *,
                   num_workers: int = 1, order: str = "random", seed: int = 0,
                   distributed: bool = False, drop_last: bool = False,
                   batches_ahead: int = 2, train: bool = True,
                   device: str | torch.device | None = None) -> "FFCVAdapter":
        """Build a Loader over a :func:`write_beton` file and wrap it.

        ``train=True``: random-resized crop + horizontal flip; ``False``: center crop
        (ratio 224/256). Images come out as uint8 ``[B, 3, H, W]`` (channels-last memory).
        ``order``: ``"random"``, ``"sequential"`` or ``"quasi_random"`` (not distributed).
        ``distributed=True`` needs ``torch.distributed`` initialised first. ``device``
        (e.g. ``"cuda:0"``) ends every pipeline with FFCV's ``ToDevice`` (non-blocking), so
        batches arrive on that device; ``None`` leaves them in host memory.
        """
        size = _as_size(resolution)
        if train:
            decoder = RandomResizedCropRGBImageDecoder(size)
            image_ops = [decoder, RandomHorizontalFlip(), ToTensor(), ToTorchImage()]
        else:
            decoder = CenterCropRGBImageDecoder(size, ratio=224 / 256)
            image_ops = [decoder, ToTensor(), ToTorchImage()]
        to_device = [] if device is None else [ToDevice(torch.device(device), non_blocking=True)]
        loader = Loader(
            str(path), batch_size=batch_size, num_workers=num_workers,
            order={"random": OrderOption.RANDOM, "sequential": OrderOption.SEQUENTIAL,
                   "quasi_random": OrderOption.QUASI_RANDOM}[order],
            seed=seed, distributed=distributed, drop_last=drop_last,
            batches_ahead=batches_ahead,
            pipelines={"image": image_ops + to_device,
                       "label": [IntDecoder(), ToTensor()] + to_device,
                       "index": [IntDecoder(), ToTensor()] + to_device})
        return cls(loader, decoder)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(resolution="epoch" if self.decoder is not None else "never",
                            magnitude="never", sample_ids=True, distributed=True)

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` produce epoch ``epoch``'s order (FFCV has no set_epoch)."""
        self.loader.next_epoch = int(epoch)
        self.epoch = int(epoch)

    def set_resolution(self, resolution: int | Sequence[int], *, now: bool = False) -> None:
        """Set the decoder's output size (pixels): from the next ``iter()``, or, with
        ``now=True``, from the next batch by restarting the epoch iterator on the remaining
        order (same samples, same order; costs a new buffer allocation, so keep it rare)."""
        if self.decoder is None:
            raise ValueError("this FFCV loader has no image decoder with output_size")
        self._pending_size = _as_size(resolution)
        self._restart_now = now and self._current is not None

    def smartloader_attach(self, smart: Any) -> None:
        """Called by ``smartloader.wrap`` (after the capability check): from now on every
        ``iter()`` first calls :meth:`smartloader_epoch_start` with ``smart.resolution``,
        the scheduled resolution of the epoch's first step (SmartLoader iterates this
        adapter once per epoch, after ``set_epoch``). The check has made sure the schedule
        only changes at epoch boundaries, so the whole epoch loads at the right size."""
        self._smart = weakref.ref(smart)

    def smartloader_epoch_start(self, resolution: int | Sequence[int] | None) -> None:
        """Load the coming epoch at ``resolution`` (``None``: keep the decoder's size)."""
        if resolution is not None and self.decoder is not None:
            self.set_resolution(resolution)

    @property
    def resolution(self) -> tuple[int, int] | None:
        """Size the *next* epoch (or restart) decodes at."""
        if self._pending_size is not None:
            return self._pending_size
        return tuple(self.decoder.output_size) if self.decoder is not None else None

    def _apply_pending_size(self) -> None:
        if self._pending_size is not None:
            self.decoder.output_size = self._pending_size
            self._pending_size = None

    def close(self) -> None:
        """Stop and join the current epoch's loading thread (safe to call twice)."""
        if self._current is not None:
            _shutdown(self._current)
            self._current = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.close()
        smart = self._smart() if self._smart is not None else None
        if smart is not None:
            self.smartloader_epoch_start(smart.resolution)
        self._apply_pending_size()
        self._restart_now = False
        self.epoch = self.loader.next_epoch
        it = iter(self.loader)          # advances loader.next_epoch
        return self._generate(it)

    def _generate(self, it: EpochIterator) -> Iterator[dict[str, torch.Tensor]]:
        self._current = it
        order = np.asarray(it.order)
        consumed = 0                    # samples already yielded this epoch
        try:
            while True:
                if self._restart_now:
                    self._restart_now = False
                    _shutdown(it)
                    self._apply_pending_size()
                    if consumed >= len(order):
                        break
                    it = EpochIterator(self.loader, order[consumed:])
                    self._current = it
                try:
                    batch = next(it)
                except StopIteration:
                    break
                image = batch[self._pos_image].clone()
                label = batch[self._pos_label].reshape(-1).to(torch.long, copy=True)
                if self._pos_index is not None:
                    index = batch[self._pos_index].reshape(-1).to(torch.long, copy=True)
                else:
                    n = image.shape[0]
                    index = torch.from_numpy(order[consumed:consumed + n].astype(np.int64))
                consumed += len(index)
                yield {"image": image, "label": label, "index": index}
        finally:
            _shutdown(it)
            if self._current is it:
                self._current = None

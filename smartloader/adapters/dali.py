"""NVIDIA DALI adapter: ``{"image", "label", "index"}`` batches, resolution and magnitude per batch.

Tested with nvidia-dali-cuda120 2.4.0 on CPU (``device_id=None``). Design, from what was
measured (see docs/adapters-dali.md):

* Sample indices: the file reader's ``labels`` are set to ``range(N)``, so its "label"
  output *is* the dataset index; real labels are looked up from a table in Python.
* Resolution without rebuilding: ``fn.resize(size=...)`` takes the size as an argument
  input fed by a batch-mode ``external_source``. Its callback computes the size from
  ``BatchInfo.iteration``, a pure function, so DALI's prefetching causes no lag. With a
  reader in the pipeline the iteration counter does *not* restart at each epoch (and
  ``BatchInfo.epoch_idx`` stays 0), so ``epoch = iteration // batches_per_epoch``.
* ``fn.random_resized_crop`` only takes a constant size, so the crop is
  ``decoders.image_random_crop`` followed by ``resize``.
* Sharding: ``pad_last_batch=True`` with ``LastBatchPolicy.PARTIAL``; FILL without padding
  duplicates samples across ranks. With padding every shard runs the same number of
  pipeline iterations per epoch, so a shard may get an *empty* last batch; it is skipped.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from smartloader.pipeline.capabilities import Capabilities

__all__ = ["build_classification_pipeline", "DALIAdapter", "batches_per_epoch", "schedule_fns"]

SizeFn = Callable[[int, int], "int | Sequence[int]"]
MagnitudeFn = Callable[[int, int], float]

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def batches_per_epoch(num_samples: int, batch_size: int, num_shards: int = 1) -> int:
    """Pipeline iterations per epoch for a padded, sharded reader (same on every shard)."""
    return math.ceil(math.ceil(num_samples / num_shards) / batch_size)


def schedule_fns(config: Any, batches_per_epoch: int, default_size: int | None = None
                 ) -> tuple[SizeFn | None, MagnitudeFn | None]:
    """``(size_fn, magnitude_fn)`` for :func:`build_classification_pipeline` that follow a
    smartloader config's ``resolution`` and ``augment`` schedules.

    ``config``: anything :func:`smartloader.load_config` accepts (pass the same one to
    ``smartloader.wrap``). ``batches_per_epoch``: pipeline iterations per epoch
    (:func:`batches_per_epoch`). Pipeline batch ``b`` is mapped to the training step it
    feeds with :func:`~smartloader.pipeline.capabilities.loader_batch_steps`: one batch per
    step in uniform phases, ``pool_factor`` consecutive batches per step in selection
    phases, pools never crossing an epoch end. The mapping is exact for a run from step 0,
    epoch after epoch; it drifts after ``set_epoch`` jumps or a resume from another position
    (DALI's own iteration counter restarts with the pipeline), and slightly when a padded
    shard's empty last batch is skipped (SmartLoader then sees one batch fewer that epoch).
    Since SmartLoader resizes every yielded batch to its step's scheduled resolution anyway,
    a drift costs an extra resize, not a wrong size.

    ``size_fn`` is ``None`` without a ``resolution`` schedule unless ``default_size`` is
    given (then it returns that). ``magnitude_fn`` is ``None`` without ``augment``; it maps
    smartloader's magnitude 0..10 to the pipeline's strength 0..1.
    """
    from smartloader.config.schema import load_config
    from smartloader.schedules.magnitude import MAX_MAGNITUDE
    from smartloader.pipeline.capabilities import loader_batch_steps

    cfg = load_config(config)
    steps: list[int] = []
    walk = loader_batch_steps(cfg, batches_per_epoch)

    def step_of(batch_index: int) -> int:
        while len(steps) <= batch_index:
            steps.append(next(walk)[2])
        return steps[batch_index]

    res, aug = cfg.schedules.resolution, cfg.schedules.augment
    size_fn: SizeFn | None = None
    if res is not None:
        def size_fn(batch_index: int, epoch: int) -> int:
            return int(res(step_of(batch_index)))
    elif default_size is not None:
        def size_fn(batch_index: int, epoch: int) -> int:
            return default_size
    magnitude_fn: MagnitudeFn | None = None
    if aug is not None:
        def magnitude_fn(batch_index: int, epoch: int) -> float:
            return float(aug(step_of(batch_index))) / MAX_MAGNITUDE
    return size_fn, magnitude_fn


class _PerBatch:
    """Batch-mode external_source callback: ``fn(batch_index, epoch)`` for every sample.

    ``batch_index`` counts this pipeline's batches from 0 over the whole run; ``epoch`` is
    derived from it. Pure in ``BatchInfo``, so prefetching cannot make it lag.
    """

    def __init__(self, fn_: Callable[[int, int], Any], batch_size: int, per_epoch: int,
                 to_array: Callable[[Any], np.ndarray]) -> None:
        self.fn, self.batch_size, self.per_epoch, self.to_array = fn_, batch_size, per_epoch, to_array

    def __call__(self, info: Any) -> list[np.ndarray]:
        it = info.iteration
        value = self.to_array(self.fn(it, it // self.per_epoch))
        return [value] * self.batch_size


def _size_array(size: Any) -> np.ndarray:
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    arr = np.asarray(size, dtype=np.float32)
    if arr.shape != (2,) or (arr < 1).any():
        raise ValueError(f"size_fn must return a positive int or (height, width), got {size!r}")
    return arr


def _magnitude_array(m: Any) -> np.ndarray:
    m = float(m)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"magnitude_fn must return a number in [0, 1], got {m!r}")
    return np.array(m, dtype=np.float32)


def build_classification_pipeline(
        files: Sequence[str], labels: Sequence[int], batch_size: int, size_fn: SizeFn,
        magnitude_fn: MagnitudeFn | None = None, *, shard_id: int = 0, num_shards: int = 1,
        seed: int = 0, device_id: int | None = None, num_threads: int = 2,
        shuffle: bool = True, random_area: tuple[float, float] = (0.08, 1.0),
        flip: bool = True, max_rotation: float = 30.0, max_brightness: float = 0.4,
        mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
        prefetch_queue_depth: int = 2, decode: str = "cpu") -> Pipeline:
    """A training pipeline over image files whose size and augmentation follow schedules.

    ``files[i]`` (JPEG/PNG/...) has class ``labels[i]``; the pipeline outputs ``image``
    (float32 ``[B, 3, H, W]``, normalised with ``mean``/``std`` in 0..255 units) and
    ``index`` (the dataset index ``i``); :class:`DALIAdapter` adds the label.
    ``size_fn(batch_index, epoch)`` gives the output size in pixels (int or
    ``(height, width)``) of each batch: random-area crop (``random_area``, fraction of the
    image), then resize to that size. ``magnitude_fn(batch_index, epoch)`` gives a strength
    in [0, 1]: a random rotation of up to ``m * max_rotation`` degrees and a brightness
    factor in ``1 ± m * max_brightness``; ``None`` skips both. ``batch_index`` counts this
    pipeline's batches from 0 over the run.

    Sharding: shard ``shard_id`` of ``num_shards`` with ``pad_last_batch=True``; ``shuffle``
    reshuffles the whole file list every epoch (``shuffle_after_epoch``; the first epoch's
    order is a ``seed``-ed permutation). ``device_id=None`` runs on CPU. ``decode="mixed"``
    (needs ``device_id``) decodes on the GPU (nvJPEG; the host parses the files) and runs
    every later operator there, so ``image`` arrives as a CUDA tensor; ``"cpu"`` decodes on
    the host (with ``device_id`` the pipeline still runs its operators on the CPU).
    """
    if decode not in ("cpu", "mixed"):
        raise ValueError(f"decode must be 'cpu' or 'mixed', got {decode!r}")
    if decode == "mixed" and device_id is None:
        raise ValueError("decode='mixed' decodes on a GPU: give device_id (e.g. 0), or use "
                         "decode='cpu' without a GPU")
    n = len(files)
    if len(labels) != n or n == 0:
        raise ValueError(f"files and labels must be non-empty and equally long, "
                         f"got {n} and {len(labels)}")
    # The reader's "label" carries the dataset index; permuting files and indices together
    # gives a shuffled first epoch (shuffle_after_epoch alone starts in file order).
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    reader_files = [str(files[i]) for i in order]
    reader_ids = [int(i) for i in order]
    per_epoch = batches_per_epoch(n, batch_size, num_shards)
    size_source = _PerBatch(size_fn, batch_size, per_epoch, _size_array)
    mag_source = (_PerBatch(magnitude_fn, batch_size, per_epoch, _magnitude_array)
                  if magnitude_fn is not None else None)

    @pipeline_def
    def classification():
        encoded, index = fn.readers.file(
            files=reader_files, labels=reader_ids, shard_id=shard_id, num_shards=num_shards,
            shuffle_after_epoch=shuffle, pad_last_batch=True, name="Reader")
        images = fn.decoders.image_random_crop(encoded, device=decode, output_type=types.RGB,
                                               random_area=list(random_area))
        size = fn.external_source(source=size_source, batch=True, batch_info=True)
        images = fn.resize(images, size=size)
        if mag_source is not None:
            m = fn.external_source(source=mag_source, batch=True, batch_info=True)
            angle = m * max_rotation * fn.random.uniform(range=[-1.0, 1.0])
            images = fn.rotate(images, angle=angle, keep_size=True, fill_value=0)
            brightness = 1.0 + m * max_brightness * fn.random.uniform(range=[-1.0, 1.0])
            images = fn.brightness_contrast(images, brightness=brightness)
        mirror = fn.random.coin_flip(probability=0.5) if flip else 0
        images = fn.crop_mirror_normalize(images, mirror=mirror, mean=list(mean),
                                          std=list(std), dtype=types.FLOAT,
                                          output_layout="CHW")
        return images, fn.reshape(index, shape=[])

    pipe = classification(batch_size=batch_size, num_threads=num_threads,
                          device_id=device_id, seed=seed,
                          prefetch_queue_depth=prefetch_queue_depth)
    pipe.build()
    return pipe


class DALIAdapter:
    """Iterate a DALI pipeline (or iterator) as dicts ``{"image", "label", "index"}``
    (``label``/``index``: LongTensor[B]), the layout SmartLoader reads by default.

    ``iterator_or_pipeline``: a pipeline from :func:`build_classification_pipeline` (an
    iterator with ``PARTIAL`` last batches over reader ``"Reader"`` is made for it), or a
    ready ``DALIGenericIterator`` whose outputs include ``index``. ``labels`` (indexed by
    dataset index) supplies ``label`` unless the iterator has a ``label`` output. Empty
    batches (a padded shard's last one) are skipped. ``len()`` is the iterator's length,
    an upper bound when a shard's last batch is empty.

    Example::

        pipe = build_classification_pipeline(files, labels, 256, size_fn=lambda b, e: 160)
        for batch in DALIAdapter(pipe, labels=labels):   # batch["image"], ["label"], ["index"]
            ...
    """

    #: name used in capability error messages
    adapter_name = "dali"

    def __init__(self, iterator_or_pipeline: Any, labels: Sequence[int] | None = None, *,
                 reader_name: str = "Reader",
                 capabilities: Capabilities | None = None) -> None:
        if isinstance(iterator_or_pipeline, Pipeline):
            self.iterator = DALIGenericIterator(
                [iterator_or_pipeline], ["image", "index"], reader_name=reader_name,
                last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)
        else:
            self.iterator = iterator_or_pipeline
        names = list(self.iterator.output_map)
        if "index" not in names or "image" not in names:
            raise ValueError(f"DALI iterator needs outputs 'image' and 'index', has {names}")
        self._has_label = "label" in names
        if not self._has_label and labels is None:
            raise ValueError("pass labels= (indexed by dataset index) or add a 'label' output")
        self.labels = (torch.as_tensor(np.asarray(labels), dtype=torch.long)
                       if labels is not None else None)
        self._capabilities = capabilities or Capabilities(
            resolution="iteration", magnitude="iteration", sample_ids=True, distributed=True)
        self.epoch = 0

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def batch_size(self) -> int:
        return self.iterator.batch_size

    def __len__(self) -> int:
        return len(self.iterator)

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch. DALI's reader advances and reshuffles by itself, so this does
        not change the order (exact resume needs DALI checkpointing)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for outputs in self.iterator:
            out = outputs[0]
            index = out["index"].reshape(-1).to(torch.long)
            if index.numel() == 0:
                continue
            label = (out["label"].reshape(-1).to(torch.long) if self._has_label
                     else self.labels[index])
            yield {"image": out["image"], "label": label, "index": index}
        self.epoch += 1

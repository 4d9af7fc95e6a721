"""Recognise a raw FFCV or DALI loader handed to :func:`smartloader.wrap` and adapt it.

``smartloader.wrap(ffcv_loader, model)`` and ``smartloader.wrap(dali_iterator, model)`` work
in one line because :func:`adapt` puts the right adapter around them:

- an FFCV ``Loader`` -> :class:`~smartloader.adapters.ffcv.FFCVAdapter`, which clones every
  batch out of FFCV's ring buffers (a pool holds several batches while later ones load; the
  raw loader would overwrite them) and drives the decoder's resolution;
- a DALI ``DALIGenericIterator`` with ``image``/``label``/``index`` outputs ->
  :class:`~smartloader.adapters.dali.DALIAdapter`; any other single-pipeline
  ``DALIGenericIterator`` -> :class:`DALIEpochs`, which yields its one dict per step and
  can be iterated once per epoch (the iterator itself is a one-shot iterator).

Loaders are recognised by the module of their class, so neither library is imported unless
the loader comes from it. What cannot be adapted (a DALI ``Pipeline``, several pipelines in
one iterator, an FFCV loader whose outputs are not clear) is a ``TypeError`` at ``wrap()``
naming the adapter to use.
"""
from __future__ import annotations

from typing import Any, Iterator

__all__ = ["adapt", "DALIEpochs", "library_of"]


def library_of(loader: Any) -> str | None:
    """``"ffcv"``, ``"dali"`` or None, from the module of the loader's class."""
    module = type(loader).__module__ or ""
    if module == "ffcv" or module.startswith("ffcv."):
        return "ffcv"
    if module.startswith("nvidia.dali"):
        return "dali"
    return None


class DALIEpochs:
    """A single-pipeline ``DALIGenericIterator`` as something iterated once per epoch, each
    step its one output dict (``{name: tensor}``). ``len()`` is the iterator's."""

    adapter_name = "dali"

    def __init__(self, iterator: Any) -> None:
        self.iterator = iterator
        self.epoch = 0

    @property
    def batch_size(self) -> int:
        return self.iterator.batch_size

    def __len__(self) -> int:
        return len(self.iterator)

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch (DALI's reader advances and reshuffles by itself)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[dict]:
        for outputs in self.iterator:
            yield outputs[0]
        self.epoch += 1


def _ffcv(loader: Any) -> Any:
    from ffcv.loader import Loader

    from smartloader.adapters.ffcv import FFCVAdapter
    if not isinstance(loader, Loader):
        raise TypeError(f"smartloader.wrap: {type(loader).__name__} comes from ffcv but is not "
                        f"an ffcv.loader.Loader; wrap the Loader itself, or "
                        f"smartloader.adapters.ffcv.FFCVAdapter(loader)")
    outputs = list(loader.pipeline_specs)
    if {"image", "label"} <= set(outputs):
        names = ("image", "label") + (("index",) if "index" in outputs else ())
    elif len(outputs) in (2, 3):
        names = tuple(outputs)
    else:
        raise TypeError(f"smartloader.wrap: cannot tell the image, label and index outputs "
                        f"of this FFCV Loader (outputs: {outputs}); wrap "
                        f"smartloader.adapters.ffcv.FFCVAdapter(loader, names=(image, label, "
                        f"index)) instead")
    return FFCVAdapter(loader, names=names)


def _dali(loader: Any) -> Any:
    from nvidia.dali.pipeline import Pipeline
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from smartloader.adapters.dali import DALIAdapter
    if isinstance(loader, Pipeline):
        raise TypeError("smartloader.wrap: a DALI Pipeline is not a loader; wrap "
                        "smartloader.adapters.dali.DALIAdapter(pipeline, labels=...) or a "
                        "DALIGenericIterator over it")
    if not isinstance(loader, DALIGenericIterator):
        raise TypeError(f"smartloader.wrap: {type(loader).__name__} from DALI is not a "
                        f"DALIGenericIterator; wrap smartloader.adapters.dali.DALIAdapter(...)")
    if len(getattr(loader, "_pipes", [None])) != 1:
        raise TypeError("smartloader.wrap: this DALIGenericIterator runs several pipelines; "
                        "wrap one smartloader.adapters.dali.DALIAdapter per pipeline")
    names = set(loader.output_map)
    if {"image", "label", "index"} <= names:
        return DALIAdapter(loader)
    return DALIEpochs(loader)


def adapt(loader: Any) -> Any:
    """``loader`` with the adapter its library needs, or unchanged."""
    lib = library_of(loader)
    if lib == "ffcv":
        return _ffcv(loader)
    if lib == "dali":
        return _dali(loader)
    return loader

"""What :class:`~smartloader.integrations.hf.SmartTrainer` puts between the Trainer and
SmartLoader: the per-sample loss of a model output (:func:`per_sample_loss`), the Trainer's
dict batches regrouped so SmartLoader scores them as ``model(**inputs)``, and the loader the
Trainer iterates (the whole run as one pass of SmartLoader steps).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from transformers.loss.loss_utils import LOSS_MAPPING, ForCausalLMLoss
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from smartloader.pipeline.loader import SmartLoader
from smartloader.scoring.model import OutputError

__all__ = ["per_sample_loss", "INPUTS"]

#: where SmartLoader finds the model's keyword inputs in the batches it pools
INPUTS = "model_inputs"
_INPUTS = INPUTS


def per_sample_loss(outputs: Any, labels: torch.Tensor, shift_labels: bool = False
                    ) -> torch.Tensor:
    """One loss per sample from a Hugging Face model output and its ``labels``.

    - logits ``[B, C]``: cross-entropy with class-index labels ``[B]``; binary cross-entropy
      averaged over classes with float multi-hot labels ``[B, C]``; squared error with one
      output (``num_labels=1``, regression).
    - logits ``[B, T, V]`` (causal or masked LM, token classification): token cross-entropy
      averaged per sample over the positions whose label is not -100 (0 for a sample with
      none). ``shift_labels=True`` (causal LMs) compares position ``t`` with label ``t+1``,
      as the model's own loss does.
    """
    logits = outputs.get("logits") if isinstance(outputs, Mapping) else getattr(
        outputs, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise OutputError(f"model output: {type(outputs).__name__} has no .logits tensor; "
                          f"SmartTrainer computes each sample's loss from the logits and the "
                          f"labels. Return logits, or pass smartloader_loss_fn=(outputs, "
                          f"labels) -> per-sample losses to SmartTrainer")
    logits = logits.float()
    if logits.dim() == 2:
        if labels.dtype.is_floating_point:
            if labels.shape == logits.shape:  # multi-label
                return F.binary_cross_entropy_with_logits(logits, labels.float(),
                                                          reduction="none").mean(-1)
            if logits.shape[-1] == 1:  # regression
                return (logits.reshape(-1) - labels.reshape(-1).float()) ** 2
        return F.cross_entropy(logits, labels.long().reshape(-1), reduction="none")
    if logits.dim() == 3:
        if labels.shape != logits.shape[:2]:
            raise OutputError(f"model output: logits of shape {tuple(logits.shape)} need "
                              f"labels of shape {tuple(logits.shape[:2])} (one per token), "
                              f"got {tuple(labels.shape)}")
        if shift_labels:
            logits, labels = logits[:, :-1], labels[:, 1:]
        labels = labels.long()
        tok = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                              reduction="none")
        count = (labels != -100).sum(1)
        return tok.sum(1) / count.clamp(min=1)
    raise OutputError(f"model output: logits of shape {tuple(logits.shape)}; SmartTrainer's "
                      f"per-sample loss takes [batch, classes] or [batch, tokens, vocab]; "
                      f"pass smartloader_loss_fn=(outputs, labels) -> per-sample losses")


def _shifts_labels(model: torch.nn.Module) -> bool:
    """Whether the model's own loss is the causal-LM one (position t predicts label t+1):
    a causal-LM class (the rule the Trainer's label smoothing uses) or its ``loss_type``."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return False
    names = {n for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()
             for n in ((v,) if isinstance(v, str) else v)}
    return type(model).__name__ in names or \
        LOSS_MAPPING.get(getattr(model, "loss_type", None)) is ForCausalLMLoss


class _KeywordBatches:
    """The Trainer's prepared loader, each dict batch regrouped for SmartLoader as
    ``{"model_inputs": {...}, <target>: labels, <index>: ids}`` (pooled, scored with
    ``model(**model_inputs)`` and subset together). :func:`_flat` undoes it."""

    def __init__(self, loader: Any, target: str, index: str | None, batch_size: int):
        self.loader, self.target, self.index, self.batch_size = loader, target, index, batch_size
        self._shapes: dict[str, tuple] | None = None
        #: called once, after the next iteration's first batch (see SmartTrainer's resume)
        self.after_first: Callable[[], None] | None = None

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.loader, "set_epoch", None)):
            self.loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            if self.after_first is not None:
                hook, self.after_first = self.after_first, None
                hook()
            yield self._regroup(batch)

    def _regroup(self, batch: Any) -> dict:
        if not isinstance(batch, Mapping):
            raise TypeError(f"SmartTrainer: the training batches are {type(batch).__name__}, "
                            f"not dicts of tensors; use a data collator that returns dicts")
        missing = [k for k in (self.target, self.index) if k is not None and k not in batch]
        if missing:
            raise KeyError(self._missing(missing[0], batch))
        if _INPUTS in batch:
            raise KeyError(f"SmartTrainer: the batch has a field named {_INPUTS!r}, the name "
                           f"SmartTrainer groups the model inputs under; rename it")
        inputs = {k: v for k, v in batch.items() if k not in (self.target, self.index)}
        self._check_shapes(inputs, batch[self.target])
        out = {_INPUTS: inputs, self.target: batch[self.target]}
        if self.index is not None:
            out[self.index] = batch[self.index]
        return out

    def _missing(self, key: str, batch: Mapping) -> str:
        fields = ", ".join(map(str, batch))
        if key == self.target:
            return (f"target_key {key!r}: the training batches have no {key!r} field (fields: "
                    f"{fields}); SmartTrainer scores each sample by its loss against its "
                    f"labels: give the dataset a label column (the default collator renames "
                    f"'label' to 'labels'), use a collator that makes labels (e.g. "
                    f"DataCollatorForLanguageModeling), or set target_key in "
                    f"smartloader_config")
        return (f"index_key {key!r}: the training batches have no {key!r} field (fields: "
                f"{fields}); add a column with each sample's dataset index, e.g. "
                f"dataset.map(lambda row, i: {{{key!r}: i}}, with_indices=True)")

    def _check_shapes(self, inputs: Mapping, target: Any) -> None:
        # A pool concatenates pool_factor batches, so every batch needs the same sequence
        # length; a collator padding each batch to its own longest sequence breaks that.
        fields = dict(inputs, **{self.target: target})
        shapes = {k: tuple(v.shape[1:]) for k, v in fields.items()
                  if isinstance(v, torch.Tensor) and v.dim() >= 2}
        if self._shapes is None:
            self._shapes = shapes
            return
        for k, s in shapes.items():
            if self._shapes.get(k, s) != s:
                raise ValueError(
                    f"SmartTrainer: field {k!r} has shape [batch, {', '.join(map(str, s))}] in "
                    f"this batch and [batch, {', '.join(map(str, self._shapes[k]))}] in the "
                    f"first; SmartLoader concatenates pool_factor batches into one pool, so "
                    f"every batch must be padded to the same length: tokenize with "
                    f"padding='max_length', max_length=N (or DataCollatorWithPadding(tokenizer,"
                    f" padding='max_length', max_length=N))")


def _flat(batch: Mapping, target: str, index: str | None) -> dict:
    """A regrouped batch as the Trainer's flat dict again (model inputs, labels, index)."""
    out = dict(batch[_INPUTS])
    out[target] = batch[target]
    if index is not None:
        out[index] = batch[index]
    return out


class _RunLoader:
    """What the Trainer iterates: SmartLoader's run as one pass of ``total`` batches,
    epoch after epoch of the wrapped loader (set_epoch is SmartLoader's business)."""

    def __init__(self, smart: SmartLoader, total: int, target: str, index: str | None):
        self.smart, self.total, self.target, self.index = smart, total, target, index
        self.epoch_start = 0     # SmartLoader step the epoch in progress started at
        self.epoch_len = 1       # steps that epoch yields
        self.resumed_start: int | None = None   # a loaded mid-epoch position's start
        self.epoch_ends: list[int] = []         # steps after which an epoch ended

    @property
    def dataset(self) -> Any:
        return self.smart.loader.dataset

    def __len__(self) -> int:
        return self.total

    @property
    def epoch(self) -> float:
        """SmartLoader's epoch of the last yielded batch plus the fraction of its steps
        yielded (read between batches, where SmartLoader's epoch is the one in progress)."""
        sl = self.smart
        return sl.epoch + min(1.0, (sl.step - self.epoch_start) / max(1, self.epoch_len))

    def __iter__(self) -> Iterator[dict]:
        sl = self.smart
        while sl.step < self.total:
            self.epoch_len = len(sl)
            self.epoch_start = sl.step if self.resumed_start is None else self.resumed_start
            self.resumed_start = None
            before = sl.step
            it = iter(sl)
            try:
                for batch in it:
                    if sl.step - self.epoch_start == self.epoch_len:
                        self.epoch_ends.append(sl.step)
                    yield _flat(batch, self.target, self.index)
                    if sl.step >= self.total:
                        return
            finally:
                it.close()
            if sl.step == before:
                raise RuntimeError(f"SmartTrainer: epoch {sl.epoch - 1} of the training "
                                   f"loader yielded no batches; is train_dataset empty?")

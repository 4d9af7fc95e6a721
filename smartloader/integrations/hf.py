"""The Hugging Face ``Trainer`` trains through SmartLoader: :class:`SmartTrainer`.

``SmartTrainer(model=..., args=..., train_dataset=..., smartloader_config=...)`` is a
``transformers.Trainer`` whose training loader is a :class:`~smartloader.SmartLoader` around
the one ``Trainer.get_train_dataloader`` builds. What it changes, and why:

- **The run is one pass of SmartLoader steps.** The Trainer sizes its epochs from
  ``len(train_dataloader)``, but a selection epoch yields about ``1/pool_factor`` as many
  batches as a uniform one, so no fixed epoch length fits. SmartTrainer hands the Trainer the
  whole run as one pass of ``T`` batches: ``T = max_steps * gradient_accumulation_steps``, or,
  with ``num_train_epochs=E``, the steps ``E`` epochs of the wrapped loader yield
  (:func:`smartloader.steps_for_epochs`) rounded up to a whole optimizer step. ``max_steps``,
  the LR scheduler and the progress bar all count ``T / gradient_accumulation_steps``
  optimizer steps; ``state.epoch`` is SmartLoader's epoch (with its fraction), and the
  ``"epoch"`` logging/eval/save strategies fire at SmartLoader's epoch ends.
- **Keyword batches.** The Trainer's batches are dicts; every field except the labels (and
  the ``index_key`` column, if configured) is a model input, so the scoring forward calls
  ``model(**inputs)`` at full length (no scoring resolution for text) and the per-sample loss
  comes from ``outputs.logits`` and the labels (:func:`per_sample_loss`).
- **Per-sample training losses.** :meth:`SmartTrainer.compute_loss` keeps the Trainer's loss
  for the backward unchanged (``num_items_in_batch`` included) and reports the per-sample
  losses of the batch it trained on to ``report_losses`` (the ``history`` scorer's table),
  naming that batch: with gradient accumulation the Trainer fetches all micro-batches of an
  optimizer step before training on the first.
- **Resume.** Each checkpoint holds ``smartloader_state_rank{N}.pt`` (SmartLoader's
  ``state_dict()``, one per process); ``train(resume_from_checkpoint=...)`` loads it instead
  of letting the Trainer skip batches by re-iterating, so the resumed run trains on exactly
  the samples the uninterrupted run would have.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import torch
import transformers
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import (PREFIX_CHECKPOINT_DIR, IntervalStrategy, SaveStrategy,
                                        get_last_checkpoint)

from smartloader.api import steps_for_epochs
from smartloader.config.schema import Config, load_config
from smartloader.errors import ConfigError, StateError
from smartloader.pipeline.loader import SmartLoader
from smartloader.integrations.hf_batches import (_INPUTS, _KeywordBatches, _RunLoader,
                                                 _shifts_labels, per_sample_loss)

__all__ = ["SmartTrainer", "per_sample_loss", "STATE_FILE"]

logger = logging.getLogger("smartloader")

#: the file in each checkpoint folder that holds a process's SmartLoader state
STATE_FILE = "smartloader_state_rank{rank}.pt"
#: the Trainer methods SmartTrainer overrides or calls (transformers 5.24); if one is gone,
#: an override would silently stop applying (the Trainer would then skip batches itself)
_TRAINER_HOOKS = ("set_initial_training_values", "_init_training_state", "_save_checkpoint",
                  "_load_rng_state", "_get_output_dir", "_set_signature_columns_if_needed")


class _EpochFlow(TrainerCallback):
    """``state.epoch`` from SmartLoader, and the ``"epoch"`` strategies at its epoch ends
    (the Trainer sees the run as one epoch; its own epoch end still fires at the end)."""

    def __init__(self, trainer: "SmartTrainer"):
        self.trainer = trainer
        self.signalled = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.signalled = state.global_step * args.gradient_accumulation_steps
        return control

    def on_step_end(self, args, state, control, **kwargs):
        run = self.trainer._run
        if run is None:
            return control
        state.epoch = run.epoch
        done = state.global_step * args.gradient_accumulation_steps
        ends = [e for e in run.epoch_ends if self.signalled < e <= done and e < run.total]
        if ends:
            self.signalled = ends[-1]
            control.should_log |= args.logging_strategy == IntervalStrategy.EPOCH
            control.should_evaluate |= (args.eval_strategy == IntervalStrategy.EPOCH
                                        and args.eval_delay <= state.epoch)
            control.should_save |= args.save_strategy == SaveStrategy.EPOCH
        return control


class SmartTrainer(Trainer):
    """A ``transformers.Trainer`` that trains on batches chosen by SmartLoader.

    Args:
        *args, **kwargs: ``Trainer``'s.
        smartloader_config: SmartLoader's config (YAML path, mapping, :class:`~smartloader.Config`
            or None for the defaults). The run length comes from ``TrainingArguments``
            (``max_steps`` or ``num_train_epochs``), so ``total_steps``/``total_epochs`` are
            not set here; neither is ``input_key`` (every field but the labels and the
            ``index_key`` column is a model input). ``target_key`` defaults to the model's
            label name (``labels``).
        smartloader_loss_fn: ``(outputs, labels) -> Tensor[B]`` per-sample losses, for
            scoring and ``report_losses``; default :func:`per_sample_loss`.
        smartloader_callback: called with each step's
            :class:`~smartloader.pipeline.stats.StepStats` (a callable or a list of them).

    ``trainer.smartloader`` is the SmartLoader of the run in progress (None before
    ``train()``).
    """

    def __init__(self, *args: Any, smartloader_config: Any = None,
                 smartloader_loss_fn: Callable | None = None,
                 smartloader_callback: Any = None, **kwargs: Any):
        gone = [name for name in _TRAINER_HOOKS if not hasattr(Trainer, name)]
        if gone:
            raise ImportError(f"SmartTrainer needs Trainer.{gone[0]}, which this transformers "
                              f"({transformers.__version__}) does not have; SmartTrainer was "
                              f"written for transformers 5.24")
        super().__init__(*args, **kwargs)
        self.smartloader: SmartLoader | None = None
        self._run: _RunLoader | None = None
        self._resume_dir: str | None = None
        self._smart_cfg = _checked_config(smartloader_config)
        self._target = self._target_key()
        self._index = _index_name(self._smart_cfg)
        model = self.accelerator.unwrap_model(self.model)
        shift = _shifts_labels(model)
        self._loss_fn = smartloader_loss_fn or (
            lambda outputs, labels: per_sample_loss(outputs, labels, shift_labels=shift))
        self._smart_callback = smartloader_callback
        self.add_callback(_EpochFlow(self))

    def _target_key(self) -> str:
        tk = self._smart_cfg.target_key
        if tk is not None:
            if len(tk) != 1 or not isinstance(tk[0], str):
                raise ConfigError(f"target_key: SmartTrainer reads the labels from a top-level "
                                  f"field of the Trainer's dict batches; got {list(tk)}")
            return tk[0]
        names = list(self.label_names)
        if len(names) != 1:
            raise ConfigError(f"target_key: the model has {len(names)} label fields "
                              f"({', '.join(names) or 'none'}); SmartTrainer scores against "
                              f"one: set target_key in smartloader_config (and "
                              f"smartloader_loss_fn if the model's output has no logits)")
        return names[0]

    # -- the loader -----------------------------------------------------------------------
    def get_train_dataloader(self):
        """The Trainer's loader (the ``index_key`` column kept through
        ``remove_unused_columns``), wrapped in SmartLoader and presented as one pass."""
        inner = self._loader_keeping_index()
        args = self.args
        wrapped = _KeywordBatches(inner, self._target, self._index, self._train_batch_size)
        overrides = {"input_key": _INPUTS, "target_key": self._target, "total_steps": None}
        if self._smart_cfg.score_resolution == "auto":  # text is scored as loaded
            overrides["score_resolution"] = None
        cfg = self._smart_cfg.replace(**overrides)
        total = _run_batches(args, wrapped, cfg)
        smart = SmartLoader(wrapped, self.model, cfg.replace(total_steps=total),
                            loss_fn=self._loss_fn, callback=self._smart_callback)
        self.smartloader = smart
        self._run = _RunLoader(smart, total, self._target, self._index)
        if self._resume_dir is not None:
            self._load_smartloader(self._resume_dir)
        return self._run

    def _loader_keeping_index(self):
        if self._index is None or not self.args.remove_unused_columns:
            return super().get_train_dataloader()
        self._set_signature_columns_if_needed()
        columns = self._signature_columns
        self._signature_columns = list(columns) + [self._index]
        try:
            return super().get_train_dataloader()
        finally:
            self._signature_columns = columns

    def set_initial_training_values(self, args, dataloader):
        """The Trainer's counts for one pass of ``len(dataloader)`` SmartLoader steps."""
        if not isinstance(dataloader, _RunLoader):
            return super().set_initial_training_values(args, dataloader)
        total = len(dataloader)
        max_steps = total // args.gradient_accumulation_steps
        batch = self.get_total_train_batch_size(args)
        return (1, max_steps, self.num_examples(dataloader), max_steps * batch, batch,
                total, max_steps)

    # -- per-sample losses ----------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The Trainer's loss, unchanged; in training, the per-sample losses of ``inputs``
        also go to ``smartloader.report_losses``. The ``index_key`` column is removed before
        the model sees the batch."""
        ids = None
        if self._index is not None and self._index in inputs:
            inputs = dict(inputs)
            ids = inputs.pop(self._index)
        labels = inputs.get(self._target)
        report = self.smartloader is not None and model.training and labels is not None
        model_inputs = {k: v for k, v in inputs.items() if k != self._target} if report \
            else None
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        if report:
            with torch.no_grad():
                losses = self._loss_fn(outputs, labels.detach())
            batch = {_INPUTS: model_inputs, self._target: labels}
            if ids is not None:
                batch[self._index] = ids
            self.smartloader.report_losses(losses.detach(), batch=batch)
        return (loss, outputs) if return_outputs else loss

    # -- checkpoints ----------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """``Trainer.train``; a resumed run loads SmartLoader's state from the checkpoint."""
        path = resume_from_checkpoint
        if isinstance(path, bool):
            path = get_last_checkpoint(self.args.output_dir) if path else None
        if path is not None and self.args.ignore_data_skip:
            raise ValueError("ignore_data_skip=True: SmartTrainer resumes at the exact batch "
                             "from the SmartLoader state in the checkpoint (it never skips "
                             "batches by re-reading them); set ignore_data_skip=False")
        self._resume_dir = path
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self._resume_dir = None

    def _load_smartloader(self, folder: str) -> None:
        file = os.path.join(folder, STATE_FILE.format(rank=self.args.process_index))
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"resume_from_checkpoint: {folder} has no {os.path.basename(file)}; it was "
                f"not saved by SmartTrainer (or by another process count), so the position "
                f"of SmartLoader's run is unknown. Resume from a SmartTrainer checkpoint")
        state = torch.load(file, map_location="cpu", weights_only=False)
        self.smartloader.load_state_dict(state)
        self._run.resumed_start = state["epoch_start_step"]
        # Starting the interrupted epoch's DataLoader iterator again draws its base seed from
        # the global torch RNG, a draw the uninterrupted run made at the epoch's start; so
        # the RNG states of the checkpoint (dropout, ...) are loaded again after it, as the
        # Trainer does after its own skip_first_batches.
        self.smartloader.loader.after_first = lambda: self._load_rng_state(folder)

    def _init_training_state(self, *args: Any, **kwargs: Any):
        # SmartLoader continues from its loaded state: the Trainer must not skip batches of
        # this pass by re-reading them (its skip_first_batches would rebuild a plain
        # DataLoader from the dataset and bypass SmartLoader).
        epochs_trained, skip = super()._init_training_state(*args, **kwargs)
        if self._resume_dir is not None and self._run is not None:
            expected = self.state.global_step * self.args.gradient_accumulation_steps
            if self.smartloader.step != expected:
                raise StateError(
                    f"resume_from_checkpoint: {self._resume_dir} is at optimizer step "
                    f"{self.state.global_step} ({expected} batches with "
                    f"gradient_accumulation_steps={self.args.gradient_accumulation_steps}), "
                    f"its SmartLoader state at step {self.smartloader.step}; they were not "
                    f"saved together")
            skip = 0
        return epochs_trained, skip

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.smartloader is None:
            return
        folder = os.path.join(self._get_output_dir(trial=trial),
                              f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        os.makedirs(folder, exist_ok=True)
        torch.save(self.smartloader.state_dict(),
                   os.path.join(folder, STATE_FILE.format(rank=self.args.process_index)))


def _checked_config(config: Any) -> Config:
    """The user's SmartLoader config, refusing what SmartTrainer sets or cannot honour."""
    cfg = load_config(config)
    problems = []
    if cfg.total_steps is not None or cfg.total_epochs is not None:
        problems.append("total_steps/total_epochs: SmartTrainer takes the run length from "
                        "TrainingArguments (max_steps or num_train_epochs); remove it")
    if cfg.input_key is not None:
        problems.append("input_key: SmartTrainer passes every batch field except the labels "
                        "and the index_key column to the model as keyword arguments; remove it")
    if isinstance(cfg.score_resolution, int):
        problems.append(f"score_resolution: {cfg.score_resolution} resizes image inputs; "
                        f"SmartTrainer scores keyword (text) inputs as loaded: set null")
    if cfg.replay is not None:
        problems.append("replay: not available with SmartTrainer (the memory stores one "
                        "input tensor per sample, and the Trainer's gradient accumulation "
                        "fetches batches ahead of their losses); remove it")
    if cfg.strategies.get("batch_transform") is not None:
        problems.append("batch_transform: MixUp/CutMix mix image tensors, not keyword "
                        "inputs; remove it")
    sch = cfg.schedules
    if sch.resolution is not None or sch.score_scale is not None:
        problems.append("resolution/score_scale: resize image batches; remove them")
    if sch.lr is not None:
        problems.append("lr: the Trainer schedules the learning rate "
                        "(TrainingArguments.lr_scheduler_type); remove it")
    scorer = cfg.strategies.get("scorer")
    if scorer is not None and (scorer["type"] in ("proxy", "proxy_model") or
                               scorer.get("reference") == "proxy_model"):
        problems.append(f"scorer: {scorer['type']} learns from input tensors, not keyword "
                        f"inputs; use low_res_loss, history or learnability (reference ema "
                        f"or best)")
    if problems:
        raise ConfigError.of([f"smartloader_config.{p}" for p in problems])
    return cfg


def _index_name(cfg: Config) -> str | None:
    raw = cfg.strategies.get("index_key")
    if raw is None:
        return None
    key = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
    if len(key) != 1 or not isinstance(key[0], str):
        raise ConfigError(f"smartloader_config.index_key: SmartTrainer reads the sample ids "
                          f"from a top-level column of the dict batches (e.g. index_key: "
                          f"index); got {raw!r}")
    return key[0]


def _run_batches(args: Any, loader: _KeywordBatches, cfg: Config) -> int:
    """SmartLoader steps of the run: ``max_steps`` optimizer steps of
    ``gradient_accumulation_steps`` batches, or what ``num_train_epochs`` epochs yield,
    rounded up to a whole optimizer step."""
    ga = args.gradient_accumulation_steps
    if args.max_steps > 0:
        return args.max_steps * ga
    epochs = args.num_train_epochs
    if epochs != int(epochs) or epochs < 1:
        raise ValueError(f"num_train_epochs={epochs}: SmartTrainer runs whole epochs of "
                         f"SmartLoader; give a whole number, or set max_steps")
    try:
        n = len(loader)
    except TypeError:
        raise ValueError("num_train_epochs: the training loader has no len() (an "
                         "IterableDataset?); set max_steps") from None
    steps = steps_for_epochs(n, int(epochs), cfg)
    total = math.ceil(steps / ga) * ga
    if total != steps:
        logger.info("num_train_epochs %d: %d SmartLoader steps, rounded up to %d (whole "
                    "optimizer steps of gradient_accumulation_steps=%d)", epochs, steps,
                    total, ga)
    return total

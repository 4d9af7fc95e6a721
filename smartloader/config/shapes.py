"""The input shapes a run feeds the model, planned from the config before anything runs.

``torch.compile`` compiles one graph per input signature it has not seen: a new shape, a
new grad mode, a new autocast state, modules switched between train and eval. SmartLoader
creates new shapes by design: a resolution schedule trains at several sides, the scoring
forward runs the pool (``pool_factor`` batches, so another batch dimension) at a lower
resolution under ``no_grad`` in eval mode, and an epoch's last batch or pool may be short.
:func:`planned_shapes` lists them, :func:`format_shapes` prints them (``smartloader plan``
shows them), and :mod:`smartloader.integrations.compile` compiles them ahead of time.

The model follows the loop exactly: the steps of each epoch come from
:func:`~smartloader.config.steps.epoch_steps` (pools never cross an epoch's end), the
training side of a step from the ``resolution`` schedule (a square ``r x r``, as
:func:`~smartloader.augment.resize_batch` makes it), the scoring size from
``score_scale`` / ``score_resolution`` applied to the pool as loaded (never upsampled,
aspect kept, as :func:`~smartloader.scoring.model.downsample` does it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from smartloader.config.phases import phase_at
from smartloader.config.steps import Consumption, epoch_steps

__all__ = ["PlannedShape", "planned_shapes", "format_shapes", "score_size"]

#: Steps a plan without ``total_steps`` looks at past the start of its last phase.
_OPEN_HORIZON = 1


@dataclass(frozen=True)
class PlannedShape:
    """One input signature the model sees: who calls it, the batch, the image size, the
    grad mode and the autocast dtype.

    ``role`` ``"train"``: the batch SmartLoader yields, which the training loop runs forward
    and backward (grad on, the model in its own mode); ``"score"``: the scoring forward
    (``no_grad``, every module in eval mode, ``autocast`` as configured). ``batch`` is the
    sample count, ``None`` when the batch size is not known; ``size`` is ``(h, w)`` in px,
    ``None`` = as loaded (unknown). ``steps`` is the first and last step using it.
    """

    role: str
    batch: int | None
    size: tuple[int, int] | None
    grad: bool
    autocast: str | None = None
    steps: tuple[int, int] | None = None
    note: str = ""

    @property
    def key(self) -> tuple:
        """What tells two signatures apart (not the steps or the note)."""
        return (self.role, self.batch, self.size, self.grad, self.autocast)

    def matches(self, role: str, shape: Sequence[int]) -> bool:
        """Whether an input of ``shape`` (N, C, H, W, or N, ...) in ``role`` is this one."""
        if role != self.role or (self.batch is not None and shape[0] != self.batch):
            return False
        return self.size is None or tuple(shape[-2:]) == self.size

    def describe(self, channels: int | None = None) -> str:
        batch = "B" if self.batch is None else str(self.batch)
        c = "C" if channels is None else str(channels)
        size = "as loaded" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        grad = "forward+backward" if self.grad else "no_grad, eval"
        cast = f", autocast {self.autocast}" if self.autocast else ""
        steps = "" if self.steps is None else f", steps {self.steps[0]}-{self.steps[1]}"
        note = f" ({self.note})" if self.note else ""
        return f"{self.role:<5} {batch} x {c} x {size}  {grad}{cast}{steps}{note}"


def score_size(loaded: tuple[int, int] | None, resolution: Any
               ) -> tuple[int, int] | None:
    """``(h, w)`` the scoring forward sees for a pool loaded at ``loaded`` when the scoring
    side is ``resolution`` (an int, or None = as loaded): the shorter side becomes
    ``resolution`` and the other keeps the aspect, never upsampled (the rule of
    :func:`~smartloader.scoring.model.downsample`)."""
    if resolution is None or loaded is None:
        return loaded
    h, w = loaded
    short = min(h, w)
    if short <= resolution:
        return loaded
    return (max(1, round(h * resolution / short)), max(1, round(w * resolution / short)))


def _first_auto(side: int, loaded_short: int) -> int | None:
    from smartloader.scoring.model import auto_candidates
    for size in auto_candidates(side):
        if size < loaded_short:
            return size
    return None


def planned_shapes(config: Any, batch_size: int | None, *,
                   image_size: tuple[int, int] | int | None = None,
                   batches_per_epoch: int | None = None, last_batch: int | None = None,
                   auto_sizes: Mapping[int, int | None] | None = None,
                   scored_by: str | None = None) -> list[PlannedShape]:
    """Every distinct input signature of a run, training ones first, then scoring ones.

    Args:
        config: a :class:`~smartloader.Config` (or anything :func:`~smartloader.load_config`
            reads).
        batch_size: samples per wrapped batch; ``None`` leaves the batch dimension open.
        image_size: ``(h, w)`` (or a side) the wrapped loader yields; default: ``max`` of the
            resolution schedule (batches are loaded at full resolution), else unknown.
        batches_per_epoch: ``len()`` of the wrapped loader; with it the short pools at the
            end of each epoch are planned exactly. ``None``: every pool is full.
        last_batch: samples in each epoch's last wrapped batch (``len(dataset) %
            batch_size`` when the loader keeps it, i.e. without ``drop_last``); ``None`` =
            a full batch.
        auto_sizes: ``score_resolution: auto``'s probed sizes (side -> size); without them
            the plan takes the first size auto tries (the model may need a larger one).
        scored_by: ``"forward"`` (the live model scores the pool) or another scorer, which
            adds no scoring shapes; default: read from the config.
    """
    from smartloader.config.schema import Config, load_config
    cfg = config if isinstance(config, Config) else load_config(config)
    if scored_by is None:
        from smartloader.tools.cli import scored_by as _scored_by
        scored_by = _scored_by(cfg)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if last_batch is not None and not (batch_size is not None and 1 <= last_batch <= batch_size):
        raise ValueError(f"last_batch must be in [1, batch_size ({batch_size})], got "
                         f"{last_batch!r}")
    schedule = cfg.schedules.resolution
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if image_size is None and schedule is not None:
        image_size = (schedule.maximum, schedule.maximum) if hasattr(schedule, "maximum") \
            else None
    model = Consumption.of(cfg)
    phases = model.phases
    total = cfg.total_steps
    if total is None:
        total = max(p.start for p in phases) + max(batches_per_epoch or 1, _OPEN_HORIZON)
    found: dict[tuple, PlannedShape] = {}

    def add(role: str, batch: int | None, size, step: int, note: str = "") -> None:
        shape = PlannedShape(role, batch, size, role == "train",
                             cfg.autocast if role == "score" else None, (step, step), note)
        old = found.get(shape.key)
        if old is None:
            found[shape.key] = shape
        else:
            found[shape.key] = PlannedShape(*shape.key, (old.steps[0], step), old.note)

    def train_size(step: int):
        return image_size if schedule is None else (int(schedule(step)),) * 2

    def scoring(step: int):
        loaded = image_size
        res = cfg.score_resolution
        scale = cfg.schedules.score_scale
        r = None if schedule is None else int(schedule(step))
        if scale is not None:
            if r is not None:
                res = max(1, round(scale * r))
            elif loaded is not None:
                res = max(1, round(scale * min(loaded)))
            else:
                return None
        elif res == "auto":
            if loaded is None:
                return None
            side = r if r is not None else min(loaded)
            res = (auto_sizes[side] if auto_sizes and side in auto_sizes
                   else _first_auto(side, min(loaded)))
        return score_size(loaded, res)

    per_epoch = batches_per_epoch or math.inf
    sizes = _batch_sizes(batch_size, last_batch, batches_per_epoch)
    join = cfg.replay is not None and cfg.replay.join_pool
    step = 0
    while step < total:
        last = step
        for s, first, take in epoch_steps(model, step, per_epoch):
            if s >= total:
                break
            last = s
            phase = phase_at(phases, s)
            if take == 0:  # a replay step: a batch of the memory's records
                add("train", batch_size, train_size(s), s, "replay step")
                continue
            n = sizes(first, take)
            if not phase.selects:
                add("train", n, train_size(s), s, "short last batch"
                    if n is not None and n != batch_size else "")
                continue
            if n is not None and batch_size is not None and n <= batch_size:
                add("train", n, train_size(s), s, "lone last batch, passed through")
                continue
            note = "" if take == model.pool_factor and (n is None or n == take * batch_size) \
                else "short last pool"
            if scored_by == "forward":
                add("score", n, scoring(s), s, note)
                if join and n is not None:  # the memory's n // pool_factor join once filled
                    add("score", n + n // model.pool_factor, scoring(s), s,
                        "join_pool: memory samples join")
            add("train", batch_size, train_size(s), s)
        step = last + 1
        if per_epoch is math.inf:
            break
    shapes = sorted(found.values(), key=lambda p: (p.role != "train", p.steps[0]))
    return shapes


def _batch_sizes(batch_size: int | None, last_batch: int | None,
                 batches_per_epoch: int | None):
    """``sizes(first, take)``: samples in wrapped batches ``first .. first + take - 1``."""
    def sizes(first: int, take: int) -> int | None:
        if batch_size is None:
            return None
        n = take * batch_size
        if last_batch is not None and batches_per_epoch is not None \
                and first + take == batches_per_epoch:
            n -= batch_size - last_batch
        return n
    return sizes


def format_shapes(shapes: Iterable[PlannedShape], channels: int | None = None) -> str:
    """The planned signatures, one per line, training then scoring, with their count."""
    shapes = list(shapes)
    n_train = sum(s.role == "train" for s in shapes)
    lines = [f"planned model input shapes: {len(shapes)} ({n_train} training, "
             f"{len(shapes) - n_train} scoring; each is one torch.compile graph)"]
    lines += ["  " + s.describe(channels) for s in shapes]
    return "\n".join(lines)

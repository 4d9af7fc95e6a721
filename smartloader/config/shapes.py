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

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from smartloader.config.phases import phase_at
from smartloader.config.steps import Consumption
from smartloader.config.strategies import scored_by as config_scored_by

__all__ = ["PlannedShape", "planned_shapes", "format_shapes", "score_size"]

@dataclass(frozen=True)
class PlannedShape:
    """One input signature the model sees: who calls it, the batch, the image size, the
    grad mode and the autocast dtype.

    ``role`` ``"train"``: the batch SmartLoader yields, which the training loop runs forward
    and backward (grad on, the model in its own mode); ``"score"``: the scoring forward
    (``no_grad``, every module in eval mode, ``autocast`` as configured). ``batch`` is the
    sample count, ``None`` when the batch size is not known; ``size`` is ``(h, w)`` in px,
    ``None`` = as loaded (unknown). ``steps``: the first and last step of the step ranges
    that use it (a range of equal phase and side; an epoch's last step is its own).
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
        scored_by = config_scored_by(cfg)
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
    if total is None:  # open-ended: every phase starts; the last goes on
        total = max(p.start for p in phases) + 1
    pf = model.pool_factor
    forward = scored_by == "forward"
    join = cfg.replay is not None and cfg.replay.join_pool
    found: dict[tuple, PlannedShape] = {}

    def add(role: str, batch: int | None, size, first: int, last: int, note: str = ""):
        shape = PlannedShape(role, batch, size, role == "train",
                             cfg.autocast if role == "score" else None, (first, last), note)
        old = found.get(shape.key)
        found[shape.key] = shape if old is None else PlannedShape(
            *shape.key, (min(old.steps[0], first), max(old.steps[1], last)), old.note)

    def scoring(r: int | None):
        return _score_size(cfg, image_size, r, auto_sizes)

    def pool(n: int | None, r: int | None, first: int, last: int, note: str = "") -> None:
        """A selection step's pool of n samples: scored (when > one batch), then a batch."""
        train = None if r is None else (r, r)
        train = image_size if train is None else train
        if n is not None and batch_size is not None and n <= batch_size:
            add("train", n, train, first, last, "lone last batch, passed through")
            return
        if forward:
            add("score", n, scoring(r), first, last, note)
            if join and n is not None:  # once the memory holds samples, n // pf join
                add("score", n + n // pf, scoring(r), first, last, "join_pool")
        add("train", batch_size, train, first, last)

    # every step: its phase and training side, in runs of equal (phase, side)
    for first, last, phase, r in _runs(phases, schedule, total):
        if phase.selects:
            pool(None if batch_size is None else pf * batch_size, r, first, last)
        else:
            add("train", batch_size, image_size if r is None else (r, r), first, last)
    # the end of each epoch: a short pool, a short last batch
    if batches_per_epoch is not None:
        step = 0
        while step < total:
            last_step, take, selects, step = _epoch_end(model, step, batches_per_epoch)
            if last_step >= total:
                break
            r = None if schedule is None else int(schedule(last_step))
            n = None if batch_size is None else take * batch_size - (
                0 if last_batch is None else batch_size - last_batch)
            if not selects:
                if n != batch_size:
                    add("train", n, image_size if r is None else (r, r), last_step, last_step,
                        "short last batch")
            elif take < pf or n != pf * (batch_size or 0):
                pool(n, r, last_step, last_step, "short last pool")
    shapes = sorted(found.values(), key=lambda p: (p.role != "train", p.steps[0], bool(p.note)))
    if cfg.total_steps is None:  # an open-ended run: the steps would be made up
        shapes = [PlannedShape(*p.key, None, p.note) for p in shapes]
    return shapes


def _runs(phases, schedule, total: int):
    """``(first, last, phase, side)`` for each run of steps with one phase and training side
    (``side`` None without a schedule)."""
    for phase in phases:
        stop = total if phase.stop is None else min(phase.stop, total)
        if phase.start >= stop:
            continue
        if schedule is None:
            yield phase.start, stop - 1, phase, None
            continue
        for first, last, side in _constant_runs(lambda s: int(schedule(s)), phase.start, stop):
            yield first, last, phase, side


#: Points :func:`_constant_runs` samples a step range at before bisecting a change.
_SAMPLES = 4096


def _constant_runs(f, start: int, stop: int) -> list[tuple[int, int, int]]:
    """``(first, last, value)`` runs of the piecewise-constant ``f`` over ``start..stop-1``.

    ``f`` is read at every step of a range of up to :data:`_SAMPLES` steps; a longer range
    is sampled every ``len // _SAMPLES`` steps and each change found is bisected to its
    exact step, so a long run costs a few dozen calls, not one per step. (Exact for the
    resolution schedules, whose stages are each at least a stride long or change
    monotonically: a stage shorter than the stride and flanked by equal values would be
    missed.)"""
    stride = max(1, (stop - start) // _SAMPLES)
    runs = []
    first, value, s = start, f(start), start
    while s < stop - 1:
        nxt = min(s + stride, stop - 1)
        if f(nxt) == value:
            s = nxt
            continue
        lo, hi = s, nxt   # f(lo) == value != f(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if f(mid) == value else (lo, mid)
        runs.append((first, hi - 1, value))
        first, value, s = hi, f(hi), hi
    runs.append((first, stop - 1, value))
    return runs


def _epoch_end(model: Consumption, start: int, batches: int) -> tuple[int, int, bool, int]:
    """``(last fresh step, wrapped batches it takes, whether it selects, next epoch's first
    step)`` of an epoch of ``batches`` wrapped batches from ``start``, a phase at a time
    (the count of :func:`~smartloader.config.steps.steps_in_epoch`)."""
    step, left = start, batches
    while True:
        phase = phase_at(model.phases, step)
        per = model.pool_factor if phase.selects else 1
        stride = 1 + model.trailing_replays(step)
        fresh = -(-left // per)
        if phase.stop is not None and step < phase.stop:
            fresh = min(fresh, -(-(phase.stop - step) // stride))
        if fresh * per >= left:
            return step + (fresh - 1) * stride, left - (fresh - 1) * per, phase.selects, \
                step + fresh * stride
        left -= fresh * per
        step += fresh * stride


def _score_size(cfg: Any, loaded: tuple[int, int] | None, r: int | None,
                auto_sizes: Mapping[int, int | None] | None) -> tuple[int, int] | None:
    """Scoring ``(h, w)`` of a pool loaded at ``loaded`` when the training side is ``r``:
    the rule of :class:`~smartloader.schedules.applier.ScheduleApplier` and
    :class:`~smartloader.scoring.ModelHandle`; with ``pool_source: two_resolution`` the
    views' own size (they are scored as loaded)."""
    src = cfg.pool_source
    if src is not None and src["type"] == "two_resolution":
        return (src["size"], src["size"])
    res = cfg.score_resolution
    scale = cfg.schedules.score_scale
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


def format_shapes(shapes: Iterable[PlannedShape], channels: int | None = None) -> str:
    """The planned signatures, one per line, training then scoring, with their count."""
    shapes = list(shapes)
    n_train = sum(s.role == "train" for s in shapes)
    lines = [f"planned model input shapes: {len(shapes)} ({n_train} training, "
             f"{len(shapes) - n_train} scoring; each is one torch.compile graph)"]
    lines += ["  " + s.describe(channels) for s in shapes]
    return "\n".join(lines)

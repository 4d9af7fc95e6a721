"""``torch.compile`` with SmartLoader: the planned shapes, pre-warming them, counting graphs.

A resolution schedule, the low-resolution scoring forward (a pool of ``pool_factor``
batches, under ``no_grad`` in eval mode) and a short last batch each give the model input
signatures it has not seen, and ``torch.compile`` compiles a graph for each one the first
time it meets it, in the middle of training. This module lists them ahead
(:func:`planned_shapes`) and compiles them all before the first step (:func:`prewarm`);
``loader.stats.compiled_graphs`` counts the graphs as the run goes, and SmartLoader warns
once if they outnumber the plan::

    model = torch.compile(net)
    loader = smartloader.wrap(train_loader, model, "smartloader.yaml")
    prewarm(loader, model, next(iter(train_loader)))     # every planned graph, now

See ``docs/compile.md``.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from smartloader.augment import resize_batch
from smartloader.common import batch as B
from smartloader.config.shapes import PlannedShape, format_shapes, planned_shapes
from smartloader.scoring.compiled import compiled_graphs, is_compiled, recompile_limit
from smartloader.scoring.model import ModelHandle, downsample

__all__ = ["prewarm", "Prewarmed", "planned_shapes", "format_shapes", "compiled_graphs",
           "PlannedShape"]

logger = logging.getLogger("smartloader")


@dataclass(frozen=True)
class Prewarmed:
    """What :func:`prewarm` ran: each shape with its wall time (seconds, compile included)
    and the model's graph count before and after (``None``: the model is not compiled)."""

    shapes: tuple[PlannedShape, ...]
    seconds: tuple[float, ...]
    graphs_before: int | None
    graphs_after: int | None

    @property
    def total_s(self) -> float:
        return sum(self.seconds)


def prewarm(loader_or_config: Any, model: torch.nn.Module | None = None, example: Any = None,
            *, batch_size: int | None = None, loss_fn: Callable | None = None,
            train: bool = True, score: bool = True,
            input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
            train_autocast: str | None = None) -> Prewarmed:
    """Run the model once on every planned shape, so ``torch.compile`` compiles them now,
    and leave the model exactly as it was.

    Scoring shapes run exactly as the scoring forward runs them (``no_grad``, every module
    in eval mode, the config's ``autocast``); training shapes run a forward and a backward
    (``torch.autograd.grad``, so no ``.grad`` is written) in the mode the model is in. The
    parameters, their ``.grad``, the buffers (BatchNorm's running statistics) and the RNG
    states of the CPU and the model's device are as before, exactly.

    Args:
        loader_or_config: a :class:`~smartloader.SmartLoader` (its plan, model and loss are
            used) or a config (path, mapping or :class:`~smartloader.Config`).
        model: the compiled model; with a SmartLoader, default (and must be) its model.
        example: one batch as the wrapped loader yields it (e.g. ``next(iter(dataloader))``);
            its input gives the channels, dtype and loaded size, its target the loss's input.
            Inputs of other batch sizes repeat its samples.
        batch_size: samples per wrapped batch; default the loader's, else the example's.
        loss_fn: per-sample loss for a config (a SmartLoader brings its own).
        train, score: warm the training shapes, the scoring shapes.
        input_transform: what the training loop does to a yielded input before the model
            (e.g. ``lambda x: x.to(memory_format=torch.channels_last)``); default: move it
            to the model's device, as the scoring forward does.
        train_autocast: ``"bfloat16"`` / ``"float16"`` when the training loop runs the
            forward under ``torch.autocast`` (a different graph from fp32).
    """
    from smartloader.config.schema import load_config
    from smartloader.pipeline.loader import SmartLoader
    from smartloader.pipeline.probe import inspect_first
    if example is None:
        raise TypeError("prewarm() needs example=: one batch as the wrapped loader yields it "
                        "(e.g. next(iter(dataloader)), taken before wrapping), to build "
                        "inputs of every planned shape")
    if isinstance(loader_or_config, SmartLoader):
        sl = loader_or_config
        if model is not None and model is not sl._handle.model:
            raise ValueError("prewarm(): model is not the model this SmartLoader scores; "
                             "pass the same (compiled) model object, or leave model out")
        cfg, handle = sl.config, sl._handle
        bs = batch_size or sl.batch_size
    else:
        if model is None:
            raise TypeError("prewarm(config, model, example): model is required with a config")
        cfg = load_config(loader_or_config)
        handle = ModelHandle(model, loss_fn, cfg.score_resolution, cfg.autocast)
        sl, bs = None, batch_size
    keys, n = inspect_first(example, cfg, handle, selects=False)
    x0, y0 = B.get_field(example, keys[0]), B.get_field(example, keys[1])
    if not isinstance(x0, torch.Tensor) or x0.dim() < 3:
        raise TypeError(f"prewarm(): the example's input {list(keys[0])} must be a tensor "
                        f"batch with an image size, got "
                        f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    if not isinstance(y0, torch.Tensor):
        raise TypeError(f"prewarm(): the example's target {list(keys[1])} must be a tensor, "
                        f"got {type(y0).__name__}")
    bs = bs or n
    loaded = tuple(int(s) for s in x0.shape[-2:])
    if cfg.score_resolution == "auto" and cfg.schedules.score_scale is None:
        _probe_auto_sides(cfg, handle, x0, y0, bs, loaded)
    if sl is not None:
        if sl._input_shape is None:
            sl._input_shape = tuple(x0.shape[1:])
        shapes = sl.planned_shapes(bs)
    else:
        shapes = planned_shapes(cfg, bs, image_size=loaded, auto_sizes=handle.auto_sizes)
    shapes = [s for s in shapes if (train and s.role == "train") or (score and s.role == "score")]
    limit = recompile_limit()
    if is_compiled(handle.model) and len(shapes) > limit:
        logger.warning("smartloader prewarm: %d planned shapes but torch._dynamo.config."
                       "recompile_limit is %d: dynamo runs the rest eagerly; raise the limit "
                       "(torch._dynamo.config.recompile_limit = %d)", len(shapes), limit,
                       len(shapes))
    module = handle.module
    device = handle.device
    move = input_transform or (lambda x: x.to(device, non_blocking=True))
    before = compiled_graphs(handle.model)
    seconds = []
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    flags = [(m, m.training) for m in module.modules()]
    with _fork_rng(device):
        try:
            for shape in shapes:
                t0 = time.perf_counter()
                if shape.role == "score":
                    x, y = _inputs(x0, y0, shape, loaded, downsample_to=True)
                    handle._forward_loss(x, y, module)
                else:
                    x, y = _inputs(x0, y0, shape, loaded, downsample_to=False)
                    _train_once(module, move(x), y.to(device), handle.loss_fn, train_autocast)
                seconds.append(time.perf_counter() - t0)
                logger.info("smartloader prewarm: %s in %.2f s", shape.describe(), seconds[-1])
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for m, training in flags:
                m.training = training
    return Prewarmed(tuple(shapes), tuple(seconds), before, compiled_graphs(handle.model))


def _probe_auto_sides(cfg: Any, handle: ModelHandle, x0: torch.Tensor, y0: torch.Tensor,
                      bs: int, loaded: tuple[int, int]) -> None:
    """``score_resolution: auto``: the size the model takes for each planned side, probed
    eagerly on two samples, once per side (as the loader would at that side's first pool)."""
    sched = cfg.schedules.resolution
    sides = ({int(sched(s)) for s in range(cfg.total_steps or 1)} if sched is not None
             else {min(loaded)})
    x2 = x0[:2].to(handle.device)
    for side in sorted(sides):
        if side not in handle.auto_sizes:
            handle.auto_sizes[side] = handle._probe_auto(x2, y0[:2], side)


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``t`` (its samples repeated), contiguous, as a concatenated pool is."""
    index = torch.arange(n, device=t.device) % t.shape[0]
    return t.index_select(0, index).contiguous()


def _inputs(x0: torch.Tensor, y0: torch.Tensor, shape: PlannedShape,
            loaded: tuple[int, int], downsample_to: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n = shape.batch if shape.batch is not None else x0.shape[0]
    x, y = _rows(x0, n), _rows(y0, n)
    size = shape.size
    if size is not None and tuple(size) != loaded:
        # the scoring forward downsamples the pool (aspect kept); the schedule resizes the
        # yielded batch to a square: the same functions, so the same sizes and dtypes
        x = downsample(x, min(size)) if downsample_to else resize_batch(x, tuple(size))
    return x, y


def _train_once(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                loss_fn: Callable, autocast: str | None) -> None:
    cast = (torch.autocast(x.device.type, dtype=getattr(torch, autocast))
            if autocast else contextlib.nullcontext())
    params = [p for p in module.parameters() if p.requires_grad]
    with torch.enable_grad(), cast:
        loss = loss_fn(module(x), y).float().mean()
    if params and loss.requires_grad:
        torch.autograd.grad(loss, params, allow_unused=True)


@contextlib.contextmanager
def _fork_rng(device: torch.device):
    """The CPU RNG and the model's device RNG restored on exit (dropout draws from them)."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            yield
    else:
        index = device.index if device.index is not None else \
            getattr(torch, device.type).current_device()
        with torch.random.fork_rng(devices=[index], device_type=device.type):
            yield

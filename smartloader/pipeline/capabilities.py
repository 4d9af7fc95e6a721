"""What a loader adapter can change while training runs, and a build-time check against it.

Each adapter declares a :class:`Capabilities`; the wrapper compares it with what the config
asks for (``wants``) before training starts, so an impossible schedule fails at build time
with a :class:`~smartloader.errors.ConfigError` instead of being silently ignored (FFCV, for
example, ignores a decoder size change until the next epoch).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from smartloader.config.steps import loader_batch_steps
from smartloader.errors import ConfigError

#: How often a value can change, from least to most flexible.
LEVELS = ("never", "epoch", "iteration")
_RANK = {level: i for i, level in enumerate(LEVELS)}

_REMEDY = {
    "resolution": "use a schedule that changes only at epoch boundaries, or restart the epoch at the new size with adapter.set_resolution(r, now=True)",
    "magnitude": "use a schedule that changes only at epoch boundaries or apply the "
                 "augmentation on device after loading",
}


@dataclass(frozen=True)
class Capabilities:
    """What an adapter supports.

    ``resolution`` / ``magnitude``: how often the image size / augmentation strength can
    change: ``"never"``, ``"epoch"`` (only between epochs) or ``"iteration"`` (every batch).
    ``sample_ids``: batches carry dataset indices. ``distributed``: the adapter shards data
    across ranks without duplicates.
    """

    resolution: str = "never"
    magnitude: str = "never"
    sample_ids: bool = False
    distributed: bool = False

    def __post_init__(self) -> None:
        for name in ("resolution", "magnitude"):
            level = getattr(self, name)
            if level not in _RANK:
                raise ValueError(f"Capabilities.{name} must be one of {', '.join(LEVELS)}, "
                                 f"got {level!r}")
        for name in ("sample_ids", "distributed"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Capabilities.{name} must be a bool, "
                                 f"got {getattr(self, name)!r}")


def change_level(values: Sequence[Any], steps_per_epoch: int) -> tuple[str, int | None]:
    """How often a per-step schedule changes: ``(level, first step that needs it)``.

    ``values[s]`` is the scheduled value at loader batch ``s`` (0-based, over the whole run).
    A change at a multiple of ``steps_per_epoch`` is an epoch-boundary change.

    >>> change_level([16, 16, 24, 24], steps_per_epoch=2)
    ('epoch', 2)
    >>> change_level([16, 16, 24, 24], steps_per_epoch=3)
    ('iteration', 2)
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch!r}")
    level, first = "never", None
    for step in range(1, len(values)):
        if values[step] == values[step - 1]:
            continue
        if step % steps_per_epoch:
            return "iteration", step
        if level == "never":
            level, first = "epoch", step
    return level, first


def _parse_want(key: str, want: Any) -> tuple[str, int | None]:
    if isinstance(want, str):
        level, step = want, None
    elif isinstance(want, Mapping):
        level, step = want.get("changes"), want.get("step")
    else:
        raise ConfigError(f"{key}: expected a level ({', '.join(LEVELS)}) or "
                          f"{{changes: level, step: int}}, got {want!r}")
    if level not in _RANK:
        raise ConfigError(f"{key}: must be one of {', '.join(LEVELS)}, got {level!r}")
    return level, step


def check_capabilities(caps: Capabilities, wants: Mapping[str, Any], adapter_name: str) -> None:
    """Raise ConfigError if ``wants`` asks for more than ``caps`` offers.

    ``wants`` keys: ``resolution`` and ``magnitude`` map to a level string or to
    ``{"changes": level, "step": first_step_needing_it}`` (the step makes the message
    precise; :func:`change_level` computes both); ``sample_ids`` and ``distributed`` map to
    booleans. Missing keys ask for nothing.
    """
    for key in wants:
        if key not in ("resolution", "magnitude", "sample_ids", "distributed"):
            raise ConfigError(f"{key}: unknown capability (allowed: resolution, magnitude, "
                              "sample_ids, distributed)")
    for key in ("resolution", "magnitude"):
        if key not in wants:
            continue
        level, step = _parse_want(key, wants[key])
        have = getattr(caps, key)
        if _RANK[level] <= _RANK[have]:
            continue
        if have == "never":
            can = f"cannot change {key} (it is fixed when the loader is built)"
        else:
            can = f"can change {key} only between epochs ({key}: epoch)"
        where = "within an epoch" if level == "iteration" else "between epochs"
        at = f" at step {step}" if step is not None else ""
        raise ConfigError(f"{key}: the {adapter_name} adapter {can}, but the schedule "
                          f"changes it {where}{at}; {_REMEDY[key]}")
    if wants.get("sample_ids") and not caps.sample_ids:
        raise ConfigError(f"sample_ids: the {adapter_name} adapter does not report dataset "
                          "indices, but the selection needs them to remember per-sample "
                          "scores; add an index output to the loader")
    if wants.get("distributed") and not caps.distributed:
        raise ConfigError(f"distributed: the {adapter_name} adapter cannot shard data across "
                          "ranks; run on one process or shard the dataset yourself")


# -- SmartLoader integration ----------------------------------------------------------------
# SmartLoader.__init__ calls :func:`on_wrap` once; everything adapter-specific lives here.

#: Epochs planned when the config has no ``total_steps`` (only schedules that do not need
#: it, e.g. ``constant``, are possible then, so a short horizon is enough).
OPEN_ENDED_EPOCHS = 10


def planned_change(schedule: Any, config: Any, batches_per_epoch: int | None
                   ) -> tuple[str, int | None]:
    """:func:`change_level` of ``schedule`` (a function of the training step) over the
    loader batches of the planned run: ``(level, first training step that needs it)``.

    The plan covers ``total_steps`` (or :data:`OPEN_ENDED_EPOCHS` epochs without it). Each
    loader batch gets the value of the training step it feeds (see
    :func:`loader_batch_steps`), so a change is an epoch-boundary change only when it falls
    on the first batch of an epoch. Without ``batches_per_epoch`` (a loader without ``len``)
    any change counts as ``iteration`` (conservative).
    """
    total = config.total_steps
    if batches_per_epoch is None:
        horizon = total if total is not None else 1
        first = schedule(0)
        for step in range(1, horizon):
            if schedule(step) != first:
                return "iteration", step
        return "never", None
    level, at = "never", None
    prev_value = prev_epoch = None
    cache: dict[int, Any] = {}
    for _, epoch, step in loader_batch_steps(config, batches_per_epoch):
        if (total is not None and step >= total) or (total is None
                                                      and epoch >= OPEN_ENDED_EPOCHS):
            break
        value = cache.get(step)
        if value is None:
            cache.clear()
            value = cache[step] = schedule(step)
        if prev_value is not None and value != prev_value:
            if epoch == prev_epoch:
                return "iteration", step
            if level == "never":
                level, at = "epoch", step
        prev_value, prev_epoch = value, epoch
    return level, at


def check_loader(loader: Any, config: Any) -> None:
    """Raise :class:`~smartloader.errors.ConfigError` if ``config``'s resolution schedule
    changes more often than ``loader.capabilities`` allows. Loaders without a
    :class:`Capabilities` ``capabilities`` attribute are not checked.

    The ``augment`` magnitude is *not* enforced: SmartLoader only publishes it
    (``loader.magnitude``), and applying it on device after loading is a valid use with any
    adapter; a changing magnitude with an adapter that cannot apply it is logged.
    """
    caps = getattr(loader, "capabilities", None)
    if not isinstance(caps, Capabilities):
        return
    name = getattr(loader, "adapter_name", None) or type(loader).__name__
    try:
        per_epoch: int | None = len(loader)
    except TypeError:
        per_epoch = None
    if per_epoch == 0:
        per_epoch = None
    wants: dict[str, Any] = {}
    schedules = config.schedules
    if schedules.resolution is not None:
        level, step = planned_change(schedules.resolution, config, per_epoch)
        wants["resolution"] = {"changes": level, "step": step}
    check_capabilities(caps, wants, name)
    if schedules.augment is not None and caps.magnitude != "iteration":
        level, step = planned_change(schedules.augment, config, per_epoch)
        if _RANK[level] > _RANK[caps.magnitude]:
            logging.getLogger("smartloader").warning(
                "augment: the %s adapter cannot apply a magnitude that changes %s (first at "
                "step %s); read loader.magnitude and augment after loading", name,
                "within an epoch" if level == "iteration" else "between epochs", step)


def on_wrap(loader: Any, smart: Any) -> None:
    """SmartLoader's construction hook: check ``loader``'s capabilities against the config
    and, if the loader has ``smartloader_attach(smart)``, let it follow ``smart``'s
    schedules (the FFCV adapter sets its decoder resolution at each epoch start)."""
    check_loader(loader, smart.config)
    attach = getattr(loader, "smartloader_attach", None)
    if callable(attach):
        attach(smart)

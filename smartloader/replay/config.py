"""The ``replay:`` YAML section: strict parsing into a frozen :class:`ReplayConfig`.

Every error is a :class:`~smartloader.errors.ConfigError` whose message starts with the key
path, e.g. ``replay.capacity: must be >= 1, got 0``. See ``docs/replay.md`` for the schema.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from smartloader.common.readers import (as_bool, as_float, as_int, as_str, check_keys, fail, join,
                                        require_mapping)
from smartloader.replay.memory import POLICIES, ReplayMemory, capacity_from
from smartloader.replay.priority import AlphaSchedule
from smartloader.replay.schedule import MODES, ReplayScheduler

KEYS = ("capacity", "policy", "device", "priority", "mode", "k", "fraction", "reaugment",
        "join_pool", "importance_weights")
DEVICES = ("cpu", "cuda", "model")


@dataclass(frozen=True)
class ReplayConfig:
    """A validated ``replay:`` section; defaults are those of ``docs/replay.md``.

    ``capacity`` is an ``int`` (samples) or a ``float`` in (0, 1] (fraction of the dataset).
    ``alpha`` is None for uniform priority. ``k`` is only meaningful with mode ``steps`` and
    ``fraction`` only with ``mix``. ``reaugment`` and ``join_pool`` are read by the core
    wrapper (re-augment replayed samples; let them join the selection pool);
    ``importance_weights`` False means the wrapper should use weights of 1.
    """

    capacity: int | float
    policy: str = "reservoir"
    device: str = "cpu"
    priority: str = "uniform"
    alpha: AlphaSchedule | None = None
    mode: str = "steps"
    k: int = 1
    fraction: float = 0.25
    reaugment: bool = True
    join_pool: bool = False
    importance_weights: bool = True

    def build_memory(self, dataset_size: int | None = None, *,
                     model_device: str | torch.device | None = None, seed: int = 0,
                     pin_memory: bool = False) -> ReplayMemory:
        """The :class:`ReplayMemory` this section describes.

        ``dataset_size`` is needed for a fractional capacity; ``model_device`` for
        ``device: model``. ``seed`` seeds the memory's generator (derive it from the run's
        seed and rank).
        """
        if self.device == "model":
            if model_device is None:
                raise ValueError("replay.device is 'model' but no model_device was given")
            device = torch.device(model_device)
        else:
            device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            # fail when the run is built, not at the first replay insert
            raise ValueError(f"replay.device is {self.device!r} but CUDA is not available")
        return ReplayMemory(capacity_from(self.capacity, dataset_size), policy=self.policy,
                            priority=self.priority, alpha=self.alpha, device=device,
                            pin_memory=pin_memory, seed=seed)

    def build_scheduler(self, batch_size: int) -> ReplayScheduler:
        """The :class:`ReplayScheduler` for yielded batches of ``batch_size`` samples."""
        return ReplayScheduler(batch_size, mode=self.mode, k=self.k, fraction=self.fraction)


def _capacity(value: Any, path: str) -> int | float:
    if isinstance(value, float):
        return as_float(value, path, minimum=0.0, maximum=1.0, min_exclusive=True)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, "must be an integer (samples) or a float in (0, 1] (fraction)", value)
    return as_int(value, path, minimum=1)


def _alpha(value: Any, path: str) -> AlphaSchedule:
    if not isinstance(value, Mapping):
        return AlphaSchedule(as_float(value, path, minimum=0.0, maximum=1.0))
    require_mapping(value, path)
    check_keys(value, ("start", "end", "decay"), path)
    for key in ("start", "end"):
        if key not in value:
            raise fail(join(path, key), "is required")
    start = as_float(value["start"], join(path, "start"), minimum=0.0, maximum=1.0)
    end = as_float(value["end"], join(path, "end"), minimum=0.0, maximum=1.0)
    decay = as_str(value.get("decay", "linear"), join(path, "decay"),
                   choices=("linear", "cosine"))
    return AlphaSchedule(start, end, decay)


def _priority(value: Any, path: str) -> tuple[str, AlphaSchedule | None]:
    require_mapping(value, path)
    check_keys(value, ("type", "alpha"), path)
    if "type" not in value:
        raise fail(join(path, "type"), "is required (uniform | epr)")
    kind = as_str(value["type"], join(path, "type"), choices=("uniform", "epr"))
    if kind == "uniform":
        if "alpha" in value:
            raise fail(join(path, "alpha"), "only valid with type: epr")
        return kind, None
    if "alpha" not in value:
        return kind, AlphaSchedule(1.0, 0.0, "linear")
    return kind, _alpha(value["alpha"], join(path, "alpha"))


def parse_replay(mapping: Any, path: str = "replay") -> ReplayConfig | None:
    """Parse the ``replay:`` section; ``None`` (the section absent, or ``replay:`` with nothing after it) gives ``None``."""
    if mapping is None:
        return None
    require_mapping(mapping, path)
    check_keys(mapping, KEYS, path)
    if "capacity" not in mapping:
        raise fail(join(path, "capacity"), "is required (samples, or a fraction of the dataset)")
    out: dict[str, Any] = {"capacity": _capacity(mapping["capacity"], join(path, "capacity"))}
    if "policy" in mapping:
        out["policy"] = as_str(mapping["policy"], join(path, "policy"), choices=POLICIES)
    if "device" in mapping:
        out["device"] = as_str(mapping["device"], join(path, "device"), choices=DEVICES)
    if "priority" in mapping:
        out["priority"], out["alpha"] = _priority(mapping["priority"], join(path, "priority"))
    mode = out["mode"] = as_str(mapping.get("mode", "steps"), join(path, "mode"), choices=MODES)
    if "k" in mapping:
        if mode != "steps":
            raise fail(join(path, "k"), "only valid with mode: steps")
        out["k"] = as_int(mapping["k"], join(path, "k"), minimum=1)
    if "fraction" in mapping:
        if mode != "mix":
            raise fail(join(path, "fraction"), "only valid with mode: mix")
        out["fraction"] = as_float(mapping["fraction"], join(path, "fraction"), minimum=0.0,
                                   maximum=1.0, min_exclusive=True, max_exclusive=True)
    for key in ("reaugment", "join_pool", "importance_weights"):
        if key in mapping:
            out[key] = as_bool(mapping[key], join(path, key))
    return ReplayConfig(**out)

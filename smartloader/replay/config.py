"""The ``replay:`` YAML section: strict parsing into a frozen :class:`ReplayConfig`.

Every error is a :class:`~smartloader.errors.ConfigError` whose message starts with the key
path, e.g. ``replay.capacity: must be >= 1, got 0``. See ``docs/replay.md`` for the schema.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from smartloader.common.readers import as_float, as_int, fail
from smartloader.common.spec import REQUIRED, Field, Section, raise_problems
from smartloader.errors import ConfigError
from smartloader.replay.memory import POLICIES, ReplayMemory, capacity_from
from smartloader.replay.priority import AlphaSchedule
from smartloader.replay.schedule import MODES, ReplayScheduler

DEVICES = ("cpu", "cuda", "model")


def _capacity(value: Any, path: str) -> int | float:
    if isinstance(value, float):
        return as_float(value, path, minimum=0.0, maximum=1.0, min_exclusive=True)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, "must be an integer (samples) or a float in (0, 1] (fraction)", value)
    return as_int(value, path, minimum=1)


_ALPHA = Section("alpha", (
    Field("start", "float", REQUIRED, minimum=0.0, maximum=1.0, doc="alpha at step 0"),
    Field("end", "float", REQUIRED, minimum=0.0, maximum=1.0, doc="alpha at total_steps"),
    Field("decay", "str", "linear", choices=("linear", "cosine"),
          doc="how alpha moves from start to end over the fraction of training"),
), required_message="is required")
#: EPR's alpha when ``priority: {type: epr}`` gives none (ours: OPIN does not publish one).
DEFAULT_ALPHA = AlphaSchedule(1.0, 0.0, _ALPHA.default("decay"))


def _alpha(value: Any, path: str) -> AlphaSchedule:
    if not isinstance(value, Mapping):
        return AlphaSchedule(as_float(value, path, minimum=0.0, maximum=1.0))
    v = _ALPHA.parse(value, path)
    return AlphaSchedule(v["start"], v["end"], v["decay"])


_PRIORITY = Section("priority", (
    Field("type", "str", REQUIRED, choices=("uniform", "epr"), hint="(uniform | epr)",
          doc="`uniform`, or OPIN's error-based priority `epr` (1 - alpha exp(-loss))"),
    Field("alpha", "any", DEFAULT_ALPHA, parse=_alpha, only=("type", ("epr",)),
          type_doc="number or {start, end, decay}",
          default_doc=f"`{{start: {DEFAULT_ALPHA.start}, end: {DEFAULT_ALPHA.end}}}`",
          only_message="{path}: only valid with type: epr",
          doc="EPR's alpha in [0, 1]: a constant, or decaying over training"),
), required_message="is required")

#: The ``replay:`` section.
REPLAY = Section("replay", (
    Field("capacity", "any", REQUIRED, parse=_capacity, type_doc="int or number",
          bounds_doc=">= 1 (samples) or (0, 1] (fraction of the dataset)",
          hint="(samples, or a fraction of the dataset)",
          doc="samples the memory keeps (an int), or a fraction of the dataset (a float)"),
    Field("policy", "str", "reservoir", choices=POLICIES,
          doc="`reservoir` keeps a uniform sample of all seen; `fifo` the latest"),
    Field("device", "str", "cpu", choices=DEVICES,
          doc="where records live; `model`: the model's device (no host copy)"),
    Field("priority", "section", None, section=_PRIORITY, default_doc="`{type: uniform}`",
          doc="which stored samples are replayed"),
    Field("mode", "str", "steps", choices=MODES,
          doc="`steps`: k replay batches after each fresh one; `mix`: a fraction of each "
              "batch from memory"),
    Field("k", "int", 1, minimum=1, only=("mode", ("steps",)),
          doc="replay steps per fresh step (mode steps)"),
    Field("fraction", "float", 0.25, minimum=0.0, maximum=1.0, min_exclusive=True,
          max_exclusive=True, only=("mode", ("mix",)),
          doc="share of each batch taken from memory (mode mix)"),
    Field("reaugment", "bool", True, doc="augment replayed samples again (stored un-augmented)"),
    Field("join_pool", "bool", False,
          doc="let replayed samples join the selection pool (n // pool_factor of them)"),
    Field("importance_weights", "bool", True,
          doc="yield importance weights (mean 1) that undo the priority's bias"),
), doc="a bounded replay memory, OPIN-style", required_message="is required")
KEYS = REPLAY.keys
_D = {f.name: f.default for f in REPLAY.fields}


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
    policy: str = _D["policy"]
    device: str = _D["device"]
    priority: str = "uniform"
    alpha: AlphaSchedule | None = None
    mode: str = _D["mode"]
    k: int = _D["k"]
    fraction: float = _D["fraction"]
    reaugment: bool = _D["reaugment"]
    join_pool: bool = _D["join_pool"]
    importance_weights: bool = _D["importance_weights"]

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
        if isinstance(self.capacity, float) and not (dataset_size and dataset_size >= 1):
            raise ConfigError(f"replay.capacity: {self.capacity} is a fraction of the dataset, "
                              f"but the dataset size is unknown (got {dataset_size!r}); give "
                              f"capacity as a number of samples")
        return ReplayMemory(capacity_from(self.capacity, dataset_size), policy=self.policy,
                            priority=self.priority, alpha=self.alpha, device=device,
                            pin_memory=pin_memory, seed=seed)

    def check_total_steps(self, total_steps: int | None) -> None:
        """A decaying EPR alpha needs the run's length: a ConfigError naming the key."""
        if (self.priority == "epr" and self.alpha is not None and not self.alpha.is_constant
                and total_steps is None):
            raise ConfigError("replay.priority.alpha: a decaying alpha needs total_steps "
                              "(give total_steps, or a constant alpha such as alpha: 0.5)")

    def build_scheduler(self, batch_size: int) -> ReplayScheduler:
        """The :class:`ReplayScheduler` for yielded batches of ``batch_size`` samples."""
        return ReplayScheduler(batch_size, mode=self.mode, k=self.k, fraction=self.fraction)


def make_replay(v: Mapping[str, Any]) -> ReplayConfig:
    """The :class:`ReplayConfig` of a read ``replay`` section (its problems reported)."""
    prio = v["priority"]
    kind = "uniform" if prio is None else prio["type"]
    alpha = prio["alpha"] if kind == "epr" else None
    return ReplayConfig(v["capacity"], v["policy"], v["device"], kind, alpha, v["mode"],
                        v["k"], v["fraction"], v["reaugment"], v["join_pool"],
                        v["importance_weights"])


def parse_replay(mapping: Any, path: str = "replay") -> ReplayConfig | None:
    """Parse the ``replay:`` section (every problem at once); ``None`` (the section absent,
    or ``replay:`` with nothing after it) gives ``None``."""
    if mapping is None:
        return None
    problems: list[str] = []
    v = REPLAY.read(mapping, path, problems)
    raise_problems(problems)
    return make_replay(v)

"""The SmartLoader configuration: a frozen :class:`Config` read by :func:`load_config`.

Everything wrong with a configuration is found by :func:`load_config`, before training
starts, and reported as one :class:`~smartloader.errors.ConfigError` that lists every
problem with its key path. The keys, their types, bounds and defaults are declared once in
the parts that use them and assembled in :data:`smartloader.config.keys.TOP`;
``python -m smartloader keys`` prints them as the table in ``docs/config.md``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from smartloader.common.spec import Values, raise_problems
from smartloader.config.keys import TOP, TOP_KEYS, read_config
from smartloader.config.phases import Phase, PhaseSpec, make_phase, phase_to_dict, resolve_phases
from smartloader.config.strategies import STRATEGY_KEYS
from smartloader.errors import ConfigError
from smartloader.replay.config import ReplayConfig, make_replay
from smartloader.schedules import SCHEDULE_KEYS, Schedules, make_schedules

__all__ = ["Config", "PhaseSpec", "Phase", "load_config", "read_yaml", "TOP_KEYS"]

KeyPath = tuple  # of int | str
_D = {f.name: f.default for f in TOP.fields}


@dataclass(frozen=True)
class Config:
    """A validated configuration. Build it with :func:`load_config`, not directly."""

    seed: int = _D["seed"]
    total_steps: int | None = _D["total_steps"]
    pool_factor: int = _D["pool_factor"]
    score_resolution: int | str | None = _D["score_resolution"]
    #: the run in epochs (None: by total_steps); SmartLoader derives total_steps from it
    total_epochs: int | None = _D["total_epochs"]
    autocast: str | None = _D["autocast"]
    input_key: KeyPath | None = _D["input_key"]
    target_key: KeyPath | None = _D["target_key"]
    phases: tuple[PhaseSpec, ...] = ()
    #: ``local``: each rank ranks its own pool; ``global``: all ranks' pools (docs/distributed.md)
    selection_scope: str = _D["selection_scope"]
    #: True when the user gave no ``phases`` and the defaults were used.
    default_phases: bool = False
    #: The parsed ``resolution``/``score_scale``/``augment``/``lr`` keys (absent = None).
    schedules: Schedules = field(default_factory=Schedules)
    #: Those keys as written, so ``to_dict`` round-trips them.
    schedule_raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The parsed ``index_key`` (a key path) and ``scorer``/``noisy_guard``/``batch_transform``
    #: sections (:class:`~smartloader.common.spec.Values`, defaults filled in; absent keys are
    #: left out): what the loader's stages (scoring, transform) are built from.
    strategies: Mapping[str, Any] = field(default_factory=Values, repr=False)
    #: Those keys as written, so ``to_dict`` round-trips them.
    strategies_raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The parsed ``replay:`` section (None = no replay), and as written for ``to_dict``.
    replay: ReplayConfig | None = None
    replay_raw: Mapping[str, Any] | None = field(default=None, repr=False)
    #: The parsed ``pool_source:`` section (None = batches of the wrapped loader), and as
    #: written for ``to_dict``.
    pool_source: Values | None = None
    pool_source_raw: Mapping[str, Any] | None = field(default=None, repr=False)
    _raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain YAML-able data (what the user wrote, defaults filled in)."""
        out: dict[str, Any] = {
            "seed": self.seed, "total_steps": self.total_steps, "pool_factor": self.pool_factor,
            "score_resolution": self.score_resolution, "autocast": self.autocast,
            "input_key": _key_to_yaml(self.input_key), "target_key": _key_to_yaml(self.target_key),
        }
        if self.total_epochs is not None:  # omitted when not given: older states still load
            out["total_epochs"] = self.total_epochs
        if self.selection_scope != _D["selection_scope"]:  # omitted at its default: older
            out["selection_scope"] = self.selection_scope  # states still load
        if not self.default_phases:
            out["phases"] = [phase_to_dict(p) for p in self.phases]
        out.update(self.schedule_raw)
        out.update(self.strategies_raw)  # absent at their defaults: older states still load
        if self.replay_raw is not None:  # absent without replay: older states still load
            out["replay"] = dict(self.replay_raw)
        if self.pool_source_raw is not None:  # absent by default: older states still load
            out["pool_source"] = dict(self.pool_source_raw)
        return out

    def with_length(self, *, total_steps: int | None = None,
                    total_epochs: int | None = None) -> "Config":
        """This config with the run's length given by one of ``total_steps`` or
        ``total_epochs`` (the other dropped), validated like a fresh one."""
        d = self.to_dict()
        d.pop("total_epochs", None)
        d["total_steps"] = total_steps
        if total_epochs is not None:
            d["total_epochs"] = total_epochs
        return load_config(d)

    def replace(self, **overrides: Any) -> "Config":
        """A new Config with top-level keys replaced, validated like a fresh one."""
        return load_config({**self.to_dict(), **overrides})

    @property
    def selects(self) -> bool:
        return any(p.selects for p in self.phases)

    def resolve_phases(self) -> tuple[Phase, ...]:
        """Step ranges of every phase. Raises ConfigError if they do not add up."""
        return resolve_phases(self.phases, self.total_steps, shrink=self.default_phases)


def _key_to_yaml(key):
    if key is None:
        return None
    return key[0] if len(key) == 1 else list(key)


def load_config(path_or_dict: "str | os.PathLike | Mapping | Config | None" = None,
                **overrides: Any) -> Config:
    """Read and validate a configuration.

    Args:
        path_or_dict: a YAML file path, a mapping (e.g. parsed YAML), an existing
            :class:`Config` (returned unchanged without overrides), or ``None`` for the
            defaults.
        **overrides: top-level keys that replace the file's or mapping's *before*
            validation, e.g. ``total_steps=10_000`` for a config whose schedules follow the
            fraction of training and so need it.

    Raises:
        ConfigError: for unknown keys, wrong types, impossible values or phases that do not
            add up. The message lists every problem, one per line, each starting with its
            key path, e.g. ``phases[1].beta: must be >= 0, got -1.0``;
            :attr:`~smartloader.errors.ConfigError.problems` holds them as a tuple.
    """
    if isinstance(path_or_dict, Config):
        return path_or_dict.replace(**overrides) if overrides else path_or_dict
    if path_or_dict is None:
        raw: Any = {}
    elif isinstance(path_or_dict, (str, os.PathLike)):
        raw = read_yaml(path_or_dict)
    else:
        raw = path_or_dict
    if overrides:
        if not isinstance(raw, Mapping):
            return _parse(raw)  # reports the wrong top-level type
        raw = {**raw, **overrides}
    return _parse(raw)


def read_yaml(path: "str | os.PathLike") -> Any:
    """The parsed YAML of a config file (``{}`` for an empty one); ConfigError if it is
    missing or not YAML."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config: no such file: {path!r}")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {path} is not valid YAML: {exc}") from None
    return {} if raw is None else raw


def _parse(raw: Any) -> Config:
    v, problems, _ = read_config(raw)
    raise_problems(problems)
    m = dict(raw)
    total = v["total_steps"]
    strategies = {k: v[k] for k in STRATEGY_KEYS if v[k] is not None}
    return Config(
        seed=v["seed"], total_steps=total, total_epochs=v["total_epochs"],
        pool_factor=v["pool_factor"],
        score_resolution=v["score_resolution"], autocast=v["autocast"],
        input_key=v["input_key"], target_key=v["target_key"],
        phases=tuple(make_phase(p) for p in v["phases"]), default_phases="phases" not in m,
        selection_scope=v["selection_scope"], schedules=make_schedules(v, total),
        schedule_raw={k: m[k] for k in SCHEDULE_KEYS if m.get(k) is not None},
        strategies=Values(strategies),
        strategies_raw={k: m[k] for k in STRATEGY_KEYS if m.get(k) is not None},
        replay=None if v["replay"] is None else make_replay(v["replay"]),
        replay_raw=None if v["replay"] is None else dict(m["replay"]),
        pool_source=None if v["pool_source"] is None else Values(v["pool_source"]),
        pool_source_raw=None if v["pool_source"] is None else dict(m["pool_source"]), _raw=m)

"""The SmartLoader configuration: top-level keys and the phases, validated strictly.

Everything wrong with a configuration is found by :func:`load_config`, before training
starts, and reported as a :class:`~smartloader.errors.ConfigError` naming the key path.

Schema (``docs/config.md`` has the long form)::

    seed: 0                 # seeds the loader's own torch.Generator (with epoch and rank)
    total_steps: 1000       # yielded training steps in the whole run; needed by `fraction`
    pool_factor: 2          # pool = pool_factor x the wrapped loader's batch size
    score_resolution: 96    # shorter side (px) of the scoring pass; null = full resolution
    autocast: null          # null | bfloat16 | float16: dtype of the scoring forward
    input_key: null         # where the input is: null = position 0 / key "image"
    target_key: null        # where the target is: null = position 1 / key "label"
    selection_scope: local  # local | global: rank within this rank's pool or all ranks' pools
    index_key: null         # where the sample ids are (needed by scorer history, noisy_guard)
    scorer: null            # {type: low_res_loss | history | proxy, ...} (docs/strategies.md)
    noisy_guard: null       # {percentile, patience, cap_to}: cap scores of always-extreme ids
    batch_transform: null   # {type: mixup | cutmix, alpha, num_classes}: after selection
    phases:                 # in order; exactly one phase may omit its length
      - {name: warmup, steps: 500, selection: uniform}
      - {name: select, selection: ranked, beta: 1.0}   # or uniform | topk |
      #   selective_backprop (beta, window)
      - {name: cooldown, fraction: 0.1, selection: uniform}
    resolution: null        # training-resolution schedule (docs/schedules.md)
    score_scale: null       # scoring resolution = round(score_scale x training resolution)
    augment: null           # augmentation-magnitude schedule (loader.magnitude)
    lr: null                # learning-rate schedule (loader.lr_scheduler(optimizer))
    replay: null            # replay memory (docs/replay.md); phases may say replay: false
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from smartloader.common import readers as v
from smartloader.errors import ConfigError
from smartloader.config.phases import (DEFAULT_PHASES, DEFAULT_PHASES_OPEN_ENDED, Phase, PhaseSpec,
                                        parse_phase, phase_at, phase_to_dict, resolve_phases)
from smartloader.replay.config import ReplayConfig, parse_replay
from smartloader.schedules import SCHEDULE_KEYS, Schedules, parse_schedules
from smartloader.config.strategies import STRATEGY_KEYS, parse_strategies

__all__ = ["Config", "PhaseSpec", "Phase", "load_config", "TOP_KEYS"]

TOP_KEYS = ("seed", "total_steps", "pool_factor", "score_resolution", "autocast",
             "input_key", "target_key", "phases", "selection_scope") + SCHEDULE_KEYS \
    + STRATEGY_KEYS + ("replay",)
_SCOPES = ("local", "global")
_AUTOCAST = ("bfloat16", "float16")


KeyPath = tuple  # of int | str


@dataclass(frozen=True)
class Config:
    """A validated configuration. Build it with :func:`load_config`, not directly."""

    seed: int = 0
    total_steps: int | None = None
    pool_factor: int = 2
    score_resolution: int | None = None
    autocast: str | None = None
    input_key: KeyPath | None = None
    target_key: KeyPath | None = None
    phases: tuple[PhaseSpec, ...] = ()
    #: ``local``: each rank ranks its own pool; ``global``: all ranks' pools (docs/distributed.md)
    selection_scope: str = "local"
    #: True when the user gave no ``phases`` and the defaults were used.
    default_phases: bool = False
    #: The parsed ``resolution``/``score_scale``/``augment``/``lr`` keys (absent = None).
    schedules: Schedules = field(default_factory=Schedules)
    #: Those keys as written, so ``to_dict`` round-trips them.
    schedule_raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: ``index_key``/``scorer``/``noisy_guard``/``batch_transform`` as written (validated;
    #: absent keys are left out), built into the loader's stages (scoring, transform).
    strategies: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The parsed ``replay:`` section (None = no replay), and as written for ``to_dict``.
    replay: ReplayConfig | None = None
    replay_raw: Mapping[str, Any] | None = field(default=None, repr=False)
    _raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain YAML-able data (what the user wrote, defaults filled in)."""
        out: dict[str, Any] = {
            "seed": self.seed, "total_steps": self.total_steps, "pool_factor": self.pool_factor,
            "score_resolution": self.score_resolution, "autocast": self.autocast,
            "input_key": _key_to_yaml(self.input_key), "target_key": _key_to_yaml(self.target_key),
        }
        if self.selection_scope != "local":  # omitted at its default: older states still load
            out["selection_scope"] = self.selection_scope
        if not self.default_phases:
            out["phases"] = [phase_to_dict(p) for p in self.phases]
        out.update(self.schedule_raw)
        out.update(self.strategies)  # absent at their defaults: older states still load
        if self.replay_raw is not None:  # absent without replay: older states still load
            out["replay"] = dict(self.replay_raw)
        return out

    def replace(self, **overrides: Any) -> "Config":
        """A new Config with top-level keys replaced, validated like a fresh one."""
        return load_config({**self.to_dict(), **overrides})

    @property
    def selects(self) -> bool:
        return any(p.selects for p in self.phases)

    def resolve_phases(self) -> tuple[Phase, ...]:
        """Step ranges of every phase. Raises ConfigError if they do not add up."""
        return resolve_phases(self.phases, self.total_steps)


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
            add up; the message starts with the key path, e.g.
            ``phases[1].beta: must be >= 0, got -1.0``.
    """
    if isinstance(path_or_dict, Config):
        return path_or_dict.replace(**overrides) if overrides else path_or_dict
    if path_or_dict is None:
        raw: Any = {}
    elif isinstance(path_or_dict, (str, os.PathLike)):
        path = os.fspath(path_or_dict)
        if not os.path.isfile(path):
            raise ConfigError(f"config: no such file: {path!r}")
        with open(path, encoding="utf-8") as fh:
            try:
                raw = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise ConfigError(f"config: {path} is not valid YAML: {exc}") from None
        if raw is None:
            raw = {}
    else:
        raw = path_or_dict
    if overrides:
        if not isinstance(raw, Mapping):
            return _parse(raw)  # reports the wrong top-level type
        raw = {**raw, **overrides}
    return _parse(raw)


def _parse_key(value: Any, path: str) -> KeyPath | None:
    if value is None:
        return None
    parts = value if isinstance(value, list) else [value]
    if not parts:
        raise v.fail(path, "must not be an empty list")
    for i, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, (int, str)):
            raise v.fail(v.join(path, i) if isinstance(value, list) else path,
                         "must be an integer position or a string key", part)
    return tuple(parts)


def _parse(raw: Any) -> Config:
    m = v.require_mapping(raw, "config")
    v.check_keys(m, TOP_KEYS, "")
    seed = v.as_int(m.get("seed", 0), "seed", minimum=0)
    total = m.get("total_steps")
    total = None if total is None else v.as_int(total, "total_steps", minimum=1)
    pool_factor = v.as_int(m.get("pool_factor", 2), "pool_factor", minimum=1)
    res = m.get("score_resolution")
    res = None if res is None else v.as_int(res, "score_resolution", minimum=1)
    autocast = m.get("autocast")
    if autocast is not None:
        autocast = v.as_str(autocast, "autocast", choices=_AUTOCAST)
    input_key = _parse_key(m.get("input_key"), "input_key")
    target_key = _parse_key(m.get("target_key"), "target_key")
    scope = v.as_str(m.get("selection_scope", "local"), "selection_scope", choices=_SCOPES)

    default_phases = "phases" not in m
    if default_phases:
        raw_phases = list(DEFAULT_PHASES if total is not None else DEFAULT_PHASES_OPEN_ENDED)
    else:
        raw_phases = v.as_list(m["phases"], "phases")
        if not raw_phases:
            raise ConfigError("phases: must list at least one phase")
    phases = tuple(parse_phase(p, v.join("phases", i)) for i, p in enumerate(raw_phases))
    seen: dict[str, int] = {}
    for i, p in enumerate(phases):
        if p.name in seen:
            raise ConfigError(f"phases[{i}].name: {p.name!r} is already the name of "
                              f"phases[{seen[p.name]}]")
        seen[p.name] = i
    if pool_factor < 2 and any(p.selects for p in phases):
        first = next(i for i, p in enumerate(phases) if p.selects)
        raise ConfigError(f"pool_factor: must be >= 2 when a phase selects (phases[{first}] "
                          f"uses {phases[first].selection!r}; a pool of one batch leaves "
                          f"nothing to choose), got {pool_factor}")
    schedules = parse_schedules(m, total)
    if schedules.score_scale is not None and res is not None:
        raise ConfigError(f"score_scale, score_resolution: give one, not both (score_scale "
                          f"{schedules.score_scale} follows the training resolution, "
                          f"score_resolution {res} fixes it)")
    schedule_raw = {k: m[k] for k in SCHEDULE_KEYS if m.get(k) is not None}
    strategies = parse_strategies(m, phases, scope)
    replay = parse_replay(m.get("replay"), "replay")
    if replay is None:
        for i, p in enumerate(phases):
            if p.replay:
                raise ConfigError(f"phases[{i}].replay: true needs a top-level replay: "
                                  f"section (capacity, mode, ...; docs/replay.md)")
    cfg = Config(seed=seed, total_steps=total, pool_factor=pool_factor, score_resolution=res,
                 autocast=autocast, input_key=input_key, target_key=target_key,
                 phases=phases, default_phases=default_phases, selection_scope=scope,
                 schedules=schedules, schedule_raw=schedule_raw, strategies=strategies,
                 replay=replay, replay_raw=None if replay is None else dict(m["replay"]),
                 _raw=dict(m))
    resolve_phases(phases, total)  # fail now, not mid-training
    return cfg



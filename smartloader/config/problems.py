"""Find *every* problem in a configuration, not only the first.

:func:`~smartloader.config.load_config` stops at the first error. :func:`config_problems`
checks each top-level key, each schedule section and each phase on its own, so one run of
``smartloader validate CONFIG.yaml`` lists them all, each starting with its key path. Checks
that relate several keys (phase lengths against ``total_steps``, ``pool_factor`` against the
phases, ``score_scale`` against ``score_resolution``) run once the keys themselves are valid.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import yaml

from smartloader.common import readers as v
from smartloader.config.phases import parse_phase as _parse_phase
from smartloader.config.schema import TOP_KEYS as _TOP_KEYS, _parse
from smartloader.errors import ConfigError
from smartloader.schedules import SCHEDULE_KEYS, parse_schedules

__all__ = ["config_problems"]

#: A neutral phase list for checking one top-level key alone.
_ONE_PHASE = [{"name": "all"}]


def _read(path_or_mapping: Any) -> tuple[Any, list[str]]:
    if isinstance(path_or_mapping, Mapping):
        return path_or_mapping, []
    path = os.fspath(path_or_mapping)
    if not os.path.isfile(path):
        return None, [f"config: no such file: {path!r}"]
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            return None, [f"config: {path} is not valid YAML: {exc}"]
    return ({} if raw is None else raw), []


def _try(problems: list[str], fn, *args) -> Any:
    try:
        return fn(*args)
    except ConfigError as exc:
        problems.append(str(exc))
        return None


def config_problems(path_or_mapping: Any) -> list[str]:
    """Every problem in a YAML file or mapping, one message each (empty list = valid)."""
    raw, problems = _read(path_or_mapping)
    if problems:
        return problems
    if not isinstance(raw, Mapping):
        return [f"config: must be a mapping, got {type(raw).__name__}"]
    m = dict(raw)
    for key in m:
        if not isinstance(key, str) or key not in _TOP_KEYS:
            problems.append(f"{key}: unknown key (allowed: {', '.join(_TOP_KEYS)})")
    known = {k: m[k] for k in m if isinstance(k, str) and k in _TOP_KEYS}
    total = known.get("total_steps")
    if total is not None and _try(problems, _parse, {"total_steps": total,
                                                     "phases": _ONE_PHASE}) is None:
        total = None  # already reported; check the rest as if it were absent
    base = {} if total is None else {"total_steps": total}
    for key, value in known.items():
        if key in ("total_steps", "phases") or key in SCHEDULE_KEYS:
            continue
        _try(problems, _parse, {**base, key: value, "phases": _ONE_PHASE})
    schedule_part = {k: known[k] for k in SCHEDULE_KEYS if k in known}
    lr_ok = "lr" not in schedule_part or _try(
        problems, parse_schedules, {"lr": schedule_part["lr"]}, total) is not None
    for key in ("resolution", "augment", "score_scale"):
        if key in schedule_part:
            extra = {"lr": schedule_part["lr"]} if lr_ok and "lr" in schedule_part else {}
            _try(problems, parse_schedules, {key: schedule_part[key], **extra}, total)
    if "phases" in known:
        phases = known["phases"]
        if not isinstance(phases, list):
            problems.append(f"phases: must be a list, got {type(phases).__name__}")
        elif not phases:
            problems.append("phases: must list at least one phase")
        else:
            for i, p in enumerate(phases):
                _try(problems, _parse_phase, p, v.join("phases", i))
    if not problems:  # relations between keys, once each key is valid on its own
        _try(problems, _parse, m)
    return problems



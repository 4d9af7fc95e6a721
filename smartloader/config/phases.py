"""Phases: what each stretch of training does, and which step belongs to which phase.

A phase is written in YAML as ``{name, selection, beta, steps | fraction, window, replay}``
(:class:`PhaseSpec`, parsed by :func:`parse_phase`) and resolved against ``total_steps`` to a
step range (:class:`Phase`, by :func:`resolve_phases`). :func:`phase_at` answers which phase
holds a step; past the planned end the last phase goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from smartloader.common import readers as v
from smartloader.errors import ConfigError

__all__ = ["PhaseSpec", "Phase", "SELECTIONS", "DEFAULT_PHASES", "DEFAULT_PHASES_OPEN_ENDED",
           "PHASE_KEYS", "parse_phase", "phase_to_dict", "resolve_phases", "phase_at"]

PHASE_KEYS = ("name", "steps", "fraction", "selection", "beta", "window", "replay")

#: Selection rules a phase may name, and whether they read ``beta``.
SELECTIONS: dict[str, bool] = {"uniform": False, "ranked": True, "topk": False,
                               "selective_backprop": True}

#: The paper's shape: a short uniform warm-up, ranked selection (beta 1), 10% uniform cool-down.
DEFAULT_PHASES: tuple[dict, ...] = (
    {"name": "warmup", "fraction": 0.05, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0},
    {"name": "cooldown", "fraction": 0.1, "selection": "uniform"},
)
#: Used when no phases and no total_steps are given: a cool-down needs to know the end.
DEFAULT_PHASES_OPEN_ENDED: tuple[dict, ...] = (
    {"name": "warmup", "steps": 100, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0},
)


@dataclass(frozen=True)
class PhaseSpec:
    """One phase as written: a length (``steps`` or ``fraction``, or neither = the rest)."""

    name: str
    selection: str = "uniform"
    beta: float = 0.0
    steps: int | None = None
    fraction: float | None = None
    #: selective_backprop only: losses in its percentile window (None = the default 1024)
    window: int | None = None
    #: ``replay: true|false`` as written; None = on whenever a ``replay:`` section exists
    replay: bool | None = None

    @property
    def selects(self) -> bool:
        """Whether the phase scores a pool (every rule except ``uniform``)."""
        return self.selection != "uniform"


@dataclass(frozen=True)
class Phase:
    """A phase resolved to step numbers: steps ``start <= step < stop`` (``stop`` None = open)."""

    name: str
    start: int
    stop: int | None
    selection: str
    beta: float
    window: int | None = None
    #: whether replay runs in this phase (only meaningful with a ``replay:`` section)
    replay: bool = True

    @property
    def selects(self) -> bool:
        return self.selection != "uniform"

    def __contains__(self, step: int) -> bool:
        return self.start <= step and (self.stop is None or step < self.stop)


def phase_to_dict(p: PhaseSpec) -> dict:
    d: dict[str, Any] = {"name": p.name, "selection": p.selection}
    if SELECTIONS.get(p.selection, False):
        d["beta"] = p.beta
    if p.window is not None:
        d["window"] = p.window
    if p.steps is not None:
        d["steps"] = p.steps
    if p.fraction is not None:
        d["fraction"] = p.fraction
    if p.replay is not None:
        d["replay"] = p.replay
    return d


def parse_phase(raw: Any, path: str) -> PhaseSpec:
    m = v.require_mapping(raw, path)
    v.check_keys(m, PHASE_KEYS, path)
    if "name" not in m:
        raise ConfigError(f"{v.join(path, 'name')}: required")
    name = v.as_str(m["name"], v.join(path, "name"))
    selection = v.as_str(m.get("selection", "uniform"), v.join(path, "selection"),
                         choices=SELECTIONS)
    if "beta" in m:
        if not SELECTIONS[selection]:
            raise ConfigError(f"{v.join(path, 'beta')}: selection {selection!r} has no beta "
                              f"(it would be ignored); remove it or use selection: ranked or "
                              f"selective_backprop")
        beta = v.as_float(m["beta"], v.join(path, "beta"), minimum=0.0)
    else:
        beta = 1.0 if SELECTIONS[selection] else 0.0
    window = None
    if "window" in m:
        if selection != "selective_backprop":
            raise ConfigError(f"{v.join(path, 'window')}: only selection selective_backprop "
                              f"has a window, this phase uses {selection!r}")
        window = v.as_int(m["window"], v.join(path, "window"), minimum=1)
    if "steps" in m and "fraction" in m:
        raise ConfigError(f"{path}: give either steps or fraction, not both "
                          f"(steps={m['steps']!r}, fraction={m['fraction']!r})")
    steps = v.as_int(m["steps"], v.join(path, "steps"), minimum=1) if "steps" in m else None
    fraction = (v.as_float(m["fraction"], v.join(path, "fraction"), minimum=0.0,
                           min_exclusive=True, maximum=1.0) if "fraction" in m else None)
    replay = v.as_bool(m["replay"], v.join(path, "replay")) if "replay" in m else None
    return PhaseSpec(name=name, selection=selection, beta=beta, steps=steps, fraction=fraction,
                     window=window, replay=replay)


def resolve_phases(phases: Sequence[PhaseSpec], total: int | None) -> tuple[Phase, ...]:
    open_idx = [i for i, p in enumerate(phases) if p.steps is None and p.fraction is None]
    if len(open_idx) > 1:
        raise ConfigError(f"phases[{open_idx[1]}]: has no length, but phases[{open_idx[0]}] "
                          f"already takes the rest; give it steps or fraction")
    lengths: list[int | None] = []
    for i, p in enumerate(phases):
        if p.fraction is not None:
            if total is None:
                raise ConfigError(f"total_steps: required because phases[{i}] ({p.name}) "
                                  f"uses fraction: {p.fraction}")
            n = round(p.fraction * total)
            if n < 1:
                raise ConfigError(f"phases[{i}].fraction: {p.fraction} of total_steps {total} "
                                  f"is less than one step")
            lengths.append(n)
        else:
            lengths.append(p.steps)
    fixed = sum(n for n in lengths if n is not None)
    if total is not None:
        if open_idx:
            rest = total - fixed
            if rest < 1:
                i = open_idx[0]
                raise ConfigError(f"phases[{i}] ({phases[i].name}): takes the rest of "
                                  f"total_steps {total}, but the other phases already use "
                                  f"{fixed} steps")
            lengths[open_idx[0]] = rest
        elif fixed != total:
            raise ConfigError(f"phases: lengths add up to {fixed} steps, but total_steps is "
                              f"{total}; make them match or give one phase no length")
    elif open_idx and open_idx[0] != len(phases) - 1:
        i = open_idx[0]
        raise ConfigError(f"total_steps: required because phases[{i}] ({phases[i].name}) has "
                          f"no length and is not the last phase, so its end is unknown")
    out, start = [], 0
    for p, n in zip(phases, lengths):
        stop = None if n is None else start + n
        out.append(Phase(p.name, start, stop, p.selection, p.beta, p.window,
                         p.replay is not False))
        start = stop if stop is not None else start
    return tuple(out)


def phase_at(phases: Sequence[Phase], step: int) -> Phase:
    """The phase that holds ``step``; past the planned end, the last phase goes on."""
    for p in phases:
        if step in p:
            return p
    return phases[-1]

"""Phases: what each stretch of training does, and which step belongs to which phase.

A phase is written in YAML as ``{name, selection, beta, steps | fraction, window, replay}``
(:class:`PhaseSpec`, parsed by :func:`parse_phase`) and resolved against ``total_steps`` to a
step range (:class:`Phase`, by :func:`resolve_phases`). :func:`phase_at` answers which phase
holds a step; past the planned end the last phase goes on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from smartloader.common.spec import REQUIRED, Field, Section, raise_problems
from smartloader.selection.rules import BETA, SELECTOR, WINDOW

__all__ = ["PhaseSpec", "Phase", "SELECTIONS", "DEFAULT_PHASES", "DEFAULT_PHASES_OPEN_ENDED",
           "PHASE", "PHASE_KEYS", "parse_phase", "make_phase", "phase_to_dict",
           "length_problems", "resolve_phases", "phase_at", "describe_phases"]

#: Selection rules a phase may name, and whether they read ``beta``.
SELECTIONS: dict[str, bool] = {name: "beta" in section.keys
                               for name, section in SELECTOR.variants}
_BETA_RULES = tuple(name for name, reads in SELECTIONS.items() if reads)

#: The paper's shape: a short uniform warm-up, ranked selection, 10% uniform cool-down.
DEFAULT_PHASES: tuple[dict, ...] = (
    {"name": "warmup", "fraction": 0.05, "selection": "uniform"},
    {"name": "select", "selection": "ranked"},
    {"name": "cooldown", "fraction": 0.1, "selection": "uniform"},
)
#: Used when no phases and no total_steps are given: a cool-down needs to know the end.
DEFAULT_PHASES_OPEN_ENDED: tuple[dict, ...] = (
    {"name": "warmup", "steps": 100, "selection": "uniform"},
    {"name": "select", "selection": "ranked"},
)


def _steps_or_fraction(v: dict, given: Mapping[str, Any], path: str, problems: list) -> None:
    if "steps" in given and "fraction" in given:
        problems.append(f"{path}: give either steps or fraction, not both "
                        f"(steps={given['steps']!r}, fraction={given['fraction']!r})")


#: One entry of ``phases:``.
PHASE = Section("phase", (
    Field("name", "str", REQUIRED, doc="the phase's name (unique; in logs, stats and state)"),
    Field("steps", "int", None, minimum=1, default_doc="-",
          doc="length in steps; or fraction; neither: the rest of the run (one phase only)"),
    Field("fraction", "float", None, minimum=0.0, maximum=1.0, min_exclusive=True,
          default_doc="-", doc="length as a fraction of total_steps"),
    Field("selection", "str", "uniform", choices=tuple(SELECTIONS),
          doc="the rule: " + SELECTOR.type_doc),
    dataclasses.replace(BETA, only=("selection", _BETA_RULES),
                        only_message="{path}: selection {value!r} has no beta (it would be "
                                     "ignored); remove it or use selection: "
                                     + " or ".join(_BETA_RULES)),
    dataclasses.replace(WINDOW, default=None, default_doc=f"`{WINDOW.default}`",
                        only=("selection", ("selective_backprop",)),
                        only_message="{path}: only selection selective_backprop has a window, "
                                     "this phase uses {value!r}"),
    Field("replay", "bool", None, default_doc="on with a `replay` section",
          doc="false pauses the replay memory in this phase; true needs a replay section"),
), checks=(_steps_or_fraction,))
PHASE_KEYS = PHASE.keys


@dataclass(frozen=True)
class PhaseSpec:
    """One phase as written: a length (``steps`` or ``fraction``, or neither = the rest)."""

    name: str
    selection: str = "uniform"
    beta: float = 0.0
    steps: int | None = None
    fraction: float | None = None
    #: selective_backprop only: scores in its percentile window (None = the rule's default)
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


def make_phase(v: Mapping[str, Any]) -> PhaseSpec:
    """The :class:`PhaseSpec` of a read ``phases[i]`` entry (its problems reported)."""
    reads_beta = SELECTIONS[v["selection"]]
    return PhaseSpec(name=v["name"], selection=v["selection"],
                     beta=v["beta"] if reads_beta else 0.0, steps=v["steps"],
                     fraction=v["fraction"], window=v["window"], replay=v["replay"])


def parse_phase(raw: Any, path: str) -> PhaseSpec:
    """One phase from its YAML mapping; raises a ConfigError listing every problem."""
    return make_phase(PHASE.parse(raw, path))


def length_problems(phases: Sequence[Any], total: int | None,
                    shrink: bool = False) -> list[str]:
    """Every way the phase lengths fail to fit ``total`` steps (``phases`` have ``name``,
    ``steps``, ``fraction``): two phases without a length, a fraction without total_steps
    or under one step, a rest under one step, lengths that do not add up, an open phase
    that is not last without total_steps. ``shrink`` (the default phases, which the user
    did not write): a fraction under one step is no problem, the phase is left out."""
    problems: list[str] = []
    open_idx = [i for i, p in enumerate(phases) if p.steps is None and p.fraction is None]
    for i in open_idx[1:]:
        problems.append(f"phases[{i}]: has no length, but phases[{open_idx[0]}] already "
                        f"takes the rest; give it steps or fraction")
    fractions = [i for i, p in enumerate(phases) if p.fraction is not None]
    if fractions and total is None:
        i = fractions[0]
        problems.append(f"total_steps: required because phases[{i}] ({phases[i].name}) uses "
                        f"fraction: {phases[i].fraction}")
        return problems
    lengths = _lengths(phases, total)
    for i in fractions:
        if lengths[i] < 1 and not shrink:
            problems.append(f"phases[{i}].fraction: {phases[i].fraction} of total_steps "
                            f"{total} is less than one step")
    if len(open_idx) > 1 or problems:
        return problems
    fixed = sum(n for n in lengths if n is not None)
    if total is not None:
        if open_idx and total - fixed < 1:
            i = open_idx[0]
            problems.append(f"phases[{i}] ({phases[i].name}): takes the rest of total_steps "
                            f"{total}, but the other phases already use {fixed} steps")
        elif not open_idx and fixed != total:
            problems.append(f"phases: lengths add up to {fixed} steps, but total_steps is "
                            f"{total}; make them match or give one phase no length")
    elif open_idx and open_idx[0] != len(phases) - 1:
        i = open_idx[0]
        problems.append(f"total_steps: required because phases[{i}] ({phases[i].name}) has "
                        f"no length and is not the last phase, so its end is unknown")
    return problems


def _lengths(phases: Sequence[Any], total: int | None) -> list[int | None]:
    return [round(p.fraction * total) if p.fraction is not None else p.steps for p in phases]


def resolve_phases(phases: Sequence[PhaseSpec], total: int | None,
                   shrink: bool = False) -> tuple[Phase, ...]:
    """Step ranges of ``phases``; raises a ConfigError listing every length problem.
    ``shrink``: phases whose fraction is under one step are left out (a short run with the
    default phases) instead of failing."""
    raise_problems(length_problems(phases, total, shrink))
    lengths = _lengths(phases, total)
    open_idx = [i for i, n in enumerate(lengths) if n is None]
    if open_idx and total is not None:
        lengths[open_idx[0]] = total - sum(n for n in lengths if n is not None)
    out, start = [], 0
    for p, n in zip(phases, lengths):
        if n == 0 and shrink:
            continue
        stop = None if n is None else start + n
        out.append(Phase(p.name, start, stop, p.selection, p.beta, p.window,
                         p.replay is not False))
        start = stop if stop is not None else start
    return tuple(out)


def describe_phases(phases: Sequence[Mapping[str, Any]]) -> str:
    """Phases as written, in words: ``warmup: uniform, 5%; select: ranked (beta 1); ...``."""
    parts = []
    for p in phases:
        v = PHASE.parse(p, "phases")
        rule = v["selection"] + (f" (beta {v['beta']:g})" if SELECTIONS[v["selection"]] else "")
        length = (f"{v['steps']} steps" if v["steps"] is not None else
                  f"{100 * v['fraction']:g}%" if v["fraction"] is not None else "the rest")
        parts.append(f"{v['name']}: {rule}, {length}")
    return "; ".join(parts)


def phase_at(phases: Sequence[Phase], step: int) -> Phase:
    """The phase that holds ``step``; past the planned end, the last phase goes on."""
    for p in phases:
        if step in p:
            return p
    return phases[-1]

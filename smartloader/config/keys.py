"""Every key of a SmartLoader config, and the checks that relate keys to each other.

:data:`TOP` assembles the top-level keys from the parts that declare them (the phases, the
schedules, the strategies, the replay memory, the pool source), so a key's type, bounds, default and meaning
are written once, next to the code that uses it. :func:`read_config` reads a raw mapping
against it and collects every problem in one pass: each key's own (a wrong type, a bound, an
unknown key with a did-you-mean hint), then the relations between keys (phase lengths vs
``total_steps``, ``pool_factor`` vs the phases, ``score_scale`` vs ``score_resolution``,
what needs ``index_key`` or ``total_steps``, ...). A relation is checked only when the keys
it relates were read without a problem, so one mistake is reported once.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping, Sequence

from smartloader.common import readers as r
from smartloader.common.spec import Field, Section, valid
from smartloader.errors import ConfigError
from smartloader.config.phases import (DEFAULT_PHASES, DEFAULT_PHASES_OPEN_ENDED, PHASE,
                                        SELECTIONS, describe_phases, length_problems)
from smartloader.config.strategies import STRATEGY_FIELDS, strategy_problems
from smartloader.config.pool_source import POOL_SOURCE, pool_source_problems
from smartloader.replay.config import REPLAY
from smartloader.schedules import SCHEDULE_FIELDS, schedule_problems

__all__ = ["TOP", "TOP_KEYS", "read_config", "pool_factor_warnings"]

def _score_resolution(value: Any, path: str) -> Any:
    if value == "auto":
        return value
    if isinstance(value, str):
        raise ConfigError(f"{path}: must be an integer >= 1, auto or null, got {value!r}")
    return r.as_int(value, path, minimum=1)


#: The top level of a config, in the order the docs (and unknown-key messages) list it.
TOP = Section("config", (
    Field("seed", "int", 0, minimum=0,
          doc="seeds the loader's own torch.Generator, mixed with the epoch and the rank; "
              "global RNGs are never touched"),
    Field("total_steps", "int", None, minimum=1, nullable=True,
          doc="yielded training steps in the whole run; needed by fraction lengths, by "
              "schedules that follow the fraction of training, and by an open phase that is "
              "not last"),
    Field("total_epochs", "int", None, minimum=1, nullable=True,
          doc="the run in epochs of the wrapped loader instead of total_steps: at wrap() "
              "SmartLoader derives total_steps from len(loader), the phases and pool_factor "
              "(a selection epoch yields fewer steps), so len(loader) and the phases agree "
              "with an epoch loop; give one of total_steps and total_epochs"),
    Field("pool_factor", "int", 2, minimum=1,
          doc="a pool is pool_factor consecutive batches of the wrapped loader; >= 2 when a "
              "phase selects; the paper keeps pool_factor >= 1 + beta"),
    Field("score_resolution", "any", "auto", nullable=True, parse=_score_resolution,
          type_doc="int, auto or null", bounds_doc=">= 1",
          doc="shorter side (px) of the scoring pass; `auto`: about half the loaded side "
              "(the training resolution under a resolution schedule), stepping up to the "
              "next size the model takes, probed once at the first batch and logged; null: "
              "the loaded resolution; never upsamples (the paper scores at 96 px for 224-px "
              "training)"),
    Field("autocast", "str", None, choices=("bfloat16", "float16"), nullable=True,
          doc="dtype of the scoring forward; null: the model's own"),
    Field("input_key", "key", None, nullable=True,
          doc="where the input is in a batch: an integer position, a string key, or a list "
              "of them for nested batches; null: position 0 of a tuple/list, key `image` of "
              "a dict"),
    Field("target_key", "key", None, nullable=True,
          doc="the same for the target; null: position 1, key `label`"),
    Field("phases", "list", DEFAULT_PHASES, section=PHASE, type_doc="list of phases",
          default_doc=f"{describe_phases(DEFAULT_PHASES)} (without total_steps: "
                      f"{describe_phases(DEFAULT_PHASES_OPEN_ENDED)})",
          doc="the training phases, in order; exactly one may omit its length and take the "
              "rest"),
    Field("selection_scope", "str", "local", choices=("local", "global"),
          doc="`local`: each rank ranks its own pool; `global`: under torch.distributed, the "
              "pools of all ranks (ranked rule only)"),
    *SCHEDULE_FIELDS,
    *STRATEGY_FIELDS,
    Field("replay", "section", None, nullable=True, section=REPLAY, doc=REPLAY.doc),
    Field("pool_source", "section", None, nullable=True, section=POOL_SOURCE,
          default_doc="null (batches of the wrapped loader)", doc=POOL_SOURCE.doc),
))
TOP_KEYS = TOP.keys


def read_config(raw: Any) -> tuple[dict | None, list[str], list[str]]:
    """``(values, problems, warnings)`` of a raw config mapping.

    ``values`` has every key with its default filled in (None when ``raw`` is not a
    mapping); a key with a problem is INVALID. ``problems`` lists every problem, each
    starting with its key path, in file order, then the relations; ``warnings`` lists what
    is allowed but unwise (the paper keeps ``pool_factor >= 1 + beta``).
    """
    problems: list[str] = []
    warnings: list[str] = []
    v = TOP.read(raw, "", problems)
    if v is None:
        return None, problems, warnings
    if "phases" not in raw:
        v["_default_phases"] = True
        closed = any(valid(v, k) and v[k] is not None for k in ("total_steps", "total_epochs"))
        v["phases"] = TOP.field("phases").read(
            list(DEFAULT_PHASES if closed else DEFAULT_PHASES_OPEN_ENDED), "phases", problems)
    _relations(v, problems, warnings)
    return v, problems, warnings


def pool_factor_warnings(phases: Sequence[Any], pool_factor: int) -> list[str]:
    """``phases[i].beta: ...`` for each selecting phase whose beta exceeds
    ``pool_factor - 1`` (``phases`` have ``selection`` and ``beta``)."""
    return [f"phases[{i}].beta: {p.beta:g} with pool_factor {pool_factor}; the paper keeps "
            f"pool_factor >= 1 + beta" for i, p in enumerate(phases)
            if SELECTIONS.get(p.selection, False) and pool_factor < 1 + p.beta]


def _relations(v: dict, problems: list[str], warnings: list[str]) -> None:
    phases = v["phases"] if valid(v, "phases") else ()
    if valid(v, "phases") and not phases:
        problems.append("phases: must list at least one phase")
    seen: dict[str, int] = {}
    for i, p in enumerate(phases):
        if valid(p, "name"):
            if p["name"] in seen:
                problems.append(f"phases[{i}].name: {p['name']!r} is already the name of "
                                f"phases[{seen[p['name']]}]")
            seen.setdefault(p["name"], i)
    _pool_factor(v, phases, problems, warnings)
    by_epochs = valid(v, "total_epochs") and v["total_epochs"] is not None
    if by_epochs and valid(v, "total_steps") and v["total_steps"] is not None:
        problems.append(f"total_steps, total_epochs: give one, not both (total_steps "
                        f"{v['total_steps']}, total_epochs {v['total_epochs']}); with "
                        f"total_epochs SmartLoader derives total_steps from len(loader)")
        by_epochs = False
    # with total_epochs the steps are known at wrap(), which checks these with them
    if valid(v, "total_steps") and not by_epochs:
        schedule_problems(v, v["total_steps"], problems)
    if valid(v, "score_scale", "score_resolution") and v["score_scale"] is not None \
            and isinstance(v["score_resolution"], int):
        problems.append(f"score_scale, score_resolution: give one, not both (score_scale "
                        f"{v['score_scale']} follows the training resolution, "
                        f"score_resolution {v['score_resolution']} fixes it)")
    strategy_problems(v, problems)
    _replay(v, phases, problems, warnings)
    pool_source_problems(v, problems)
    if valid(v, "total_steps") and not by_epochs and phases and all(
            valid(p, "name", "steps", "fraction") for p in phases):
        problems.extend(length_problems([SimpleNamespace(**p) for p in phases],
                                        v["total_steps"], shrink=v.get("_default_phases")))


def _pool_factor(v: Mapping[str, Any], phases: Sequence[Any], problems: list[str],
                 warnings: list[str]) -> None:
    if not valid(v, "pool_factor"):
        return
    pf = v["pool_factor"]
    selecting = [(i, p) for i, p in enumerate(phases)
                 if valid(p, "selection") and p["selection"] != "uniform"]
    if pf < 2 and selecting:
        i, p = selecting[0]
        problems.append(f"pool_factor: must be >= 2 when a phase selects (phases[{i}] uses "
                        f"{p['selection']!r}; a pool of one batch leaves nothing to choose), "
                        f"got {pf}")
    rows = [SimpleNamespace(selection=p["selection"] if valid(p, "selection", "beta")
                            else "uniform", beta=p.get("beta")) for p in phases]
    warnings.extend(pool_factor_warnings(rows, pf))


def _replay(v: Mapping[str, Any], phases: Sequence[Any], problems: list[str],
            warnings: list[str]) -> None:
    if not valid(v, "replay"):
        return
    replay = v["replay"]
    if replay is None:
        for i, p in enumerate(phases):
            if valid(p, "replay") and p["replay"]:
                problems.append(f"phases[{i}].replay: true needs a top-level replay: section "
                                f"(capacity, mode, ...; docs/replay.md)")
        return
    priority = replay["priority"]
    if (valid(v, "total_steps") and v["total_steps"] is None and priority is not None
            and priority["type"] == "epr" and not priority["alpha"].is_constant):
        warnings.append("replay.priority.alpha: a decaying alpha needs total_steps; set it, "
                        "pass total_steps=N when wrapping, or give a constant alpha")

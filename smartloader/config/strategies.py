"""The strategy keys of the config: ``index_key``, ``scorer``, ``noisy_guard``,
``batch_transform`` (their long form is in docs/strategies.md).

Each section's keys are declared next to its code (:data:`~smartloader.scoring.SCORER`,
:data:`~smartloader.scoring.noisy_guard.NOISY_GUARD`,
:data:`~smartloader.augment.mixing.BATCH_TRANSFORM`); this module puts them at the top level
and checks how they relate to each other and to the phases.
"""
from __future__ import annotations

from typing import Any, Mapping

from smartloader.augment.mixing import BATCH_TRANSFORM
from smartloader.common.spec import Field, valid
from smartloader.scoring.noisy_guard import NOISY_GUARD
from smartloader.scoring.scorers import DEFAULT_SCORER, SCORER

__all__ = ["STRATEGY_FIELDS", "STRATEGY_KEYS", "strategy_problems", "scored_by"]

#: Top-level config keys this module owns, in the order the docs list them.
STRATEGY_FIELDS = (
    Field("index_key", "key", None, nullable=True,
          doc="where the sample ids (dataset indices) are in a batch; needed by the history "
              "scorer and noisy_guard"),
    Field("scorer", "section", None, nullable=True, section=SCORER,
          default_doc=f"null (`{DEFAULT_SCORER}`)", doc=SCORER.doc),
    Field("noisy_guard", "section", None, nullable=True, section=NOISY_GUARD,
          doc=NOISY_GUARD.doc),
    Field("batch_transform", "section", None, nullable=True, section=BATCH_TRANSFORM,
          doc=BATCH_TRANSFORM.doc),
)
STRATEGY_KEYS = tuple(f.name for f in STRATEGY_FIELDS)
#: Scorer types that key their state by sample id, so they need ``index_key``.
_NEEDS_IDS = ("history",)
#: Rules ``selection_scope: global`` can rank across ranks (uniform does not rank).
_GLOBAL_RULES = ("uniform", "ranked")


def strategy_problems(v: Mapping[str, Any], problems: list[str]) -> None:
    """Relations of the read top-level ``v``: what needs ``index_key``, and which rules a
    global ``selection_scope`` supports. Keys already reported INVALID are skipped."""
    if valid(v, "index_key") and v["index_key"] is None:
        scorer = v.get("scorer")
        if valid(v, "scorer") and scorer is not None and scorer["type"] in _NEEDS_IDS:
            problems.append(f"scorer.type: {scorer['type']} keys losses by sample id, so it "
                            f"needs index_key (where the dataset index is in a batch)")
        elif valid(v, "scorer") and scorer is not None and scorer["type"] == "learnability":
            for key, value in (("learner", "history"), ("reference", "best")):
                if scorer.get(key) == value:
                    problems.append(f"scorer.{key}: {value} keys losses by sample id, so it "
                                    f"needs index_key (where the dataset index is in a "
                                    f"batch)")
        if valid(v, "noisy_guard") and v.get("noisy_guard") is not None:
            problems.append("noisy_guard: tracks samples across pools by sample id, so it "
                            "needs index_key (where the dataset index is in a batch)")
    if valid(v, "selection_scope", "phases") and v["selection_scope"] == "global":
        for i, p in enumerate(v["phases"]):
            if valid(p, "selection") and p["selection"] not in _GLOBAL_RULES:
                problems.append(f"phases[{i}].selection: selection_scope global supports only "
                                f"ranked, got {p['selection']!r}")


def scored_by(config) -> str:
    """How the config's scorer scores a pool: ``forward`` (the live model), ``table`` (a
    loss table, no forward) or ``proxy`` (a small co-trained network)."""
    scorer = config.strategies.get("scorer")
    kind = None if scorer is None else scorer["type"]
    if kind == "history":
        return "table"
    if kind == "proxy_model":
        return "proxy"
    if kind == "learnability":
        if scorer["learner"] == "history" and scorer["reference"] == "best":
            return "table"
        if scorer["learner"] == "history" and scorer["reference"] == "proxy_model":
            return "proxy"
    return "forward"

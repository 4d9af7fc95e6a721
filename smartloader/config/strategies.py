"""The strategy sections of the config: ``index_key``, ``scorer``, ``noisy_guard``,
``batch_transform`` (their long form is in docs/strategies.md).

Each section is validated by building it once with its own builder, so every error names its
key path; the validated mappings are kept as written and built again by the loader's stages.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from smartloader.augment.mixing import build_batch_transform
from smartloader.common import readers as v
from smartloader.errors import ConfigError
from smartloader.scoring.noisy_guard import build_noisy_guard
from smartloader.scoring.scorers import build_scorer

__all__ = ["STRATEGY_KEYS", "parse_strategies"]

#: Top-level config keys this module owns.
STRATEGY_KEYS = ("index_key", "scorer", "noisy_guard", "batch_transform")
#: Scorer types that key their state by sample id, so they need ``index_key``.
_NEEDS_IDS = ("history",)


def parse_strategies(m: Mapping[str, Any], phases: Sequence[Any], scope: str) -> dict:
    """Validate the strategy keys of the raw config ``m`` (building each part once, so every
    error names its key path) and return those given, as written."""
    out: dict[str, Any] = {}
    index_key = m.get("index_key")
    if index_key is not None:
        parts = index_key if isinstance(index_key, list) else [index_key]
        if not parts or any(isinstance(p, bool) or not isinstance(p, (int, str)) for p in parts):
            raise v.fail("index_key", "must be an integer position, a string key or a "
                         "non-empty list of them", index_key)
        out["index_key"] = index_key
    if m.get("scorer") is not None:
        build_scorer(m["scorer"], "scorer")  # validates; the loader builds its own
        kind = m["scorer"]["type"]
        if kind in _NEEDS_IDS and index_key is None:
            raise ConfigError(f"scorer.type: {kind} keys losses by sample id, so it needs "
                              f"index_key (where the dataset index is in a batch)")
        out["scorer"] = m["scorer"]
    if m.get("noisy_guard") is not None:
        build_noisy_guard(m["noisy_guard"], "noisy_guard")
        if index_key is None:
            raise ConfigError("noisy_guard: tracks samples across pools by sample id, so it "
                              "needs index_key (where the dataset index is in a batch)")
        out["noisy_guard"] = m["noisy_guard"]
    if m.get("batch_transform") is not None:
        build_batch_transform(m["batch_transform"], "batch_transform")
        out["batch_transform"] = m["batch_transform"]
    for i, p in enumerate(phases):
        if scope == "global" and p.selection not in ("uniform", "ranked"):
            raise ConfigError(f"phases[{i}].selection: selection_scope global supports only "
                              f"ranked, got {p.selection!r}")
    return out

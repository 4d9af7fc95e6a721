"""Strict state loading shared by every stateful part (selectors, scorers, guards)."""
from __future__ import annotations

from typing import Any, Mapping


def strict_keys(owner: object, state: Mapping[str, Any], expected: set[str]) -> None:
    """Raise ``ValueError`` unless ``state`` has exactly the ``expected`` keys."""
    got = set(state)
    if got != expected:
        raise ValueError(f"{type(owner).__name__}.load_state_dict: missing keys "
                         f"{sorted(expected - got)}, unexpected keys {sorted(got - expected)}")

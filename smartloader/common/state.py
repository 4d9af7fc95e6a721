"""Strict state loading shared by every stateful part: one helper, one exception type."""
from __future__ import annotations

from typing import Any, Mapping

from smartloader.errors import StateError

__all__ = ["strict_keys", "StateError"]


def strict_keys(owner: object, state: Any, expected: set[str], path: str | None = None) -> None:
    """Raise :class:`~smartloader.errors.StateError` unless ``state`` is a mapping with exactly
    the ``expected`` keys. ``path`` (e.g. ``"state.replay"``) names it in the message;
    without one the owner's class does."""
    where = path or f"{type(owner).__name__}.load_state_dict"
    if not isinstance(state, Mapping):
        raise StateError(f"{where}: must be a dict, got {type(state).__name__}")
    got = set(state)
    if got != expected:
        raise StateError(f"{where}: missing keys {sorted(expected - got)}, unexpected keys "
                         f"{sorted(got - expected)}")

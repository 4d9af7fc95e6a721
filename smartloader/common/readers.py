"""Small strict-validation helpers shared by every YAML section.

Each helper takes the *key path* of the value (``"phases[1].beta"``) so that the
:class:`~smartloader.errors.ConfigError` it raises names exactly where the problem is.
Booleans are never accepted where numbers are expected (``True`` is an ``int`` in Python).
"""
from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

from smartloader.errors import ConfigError


def join(path: str, key: str | int) -> str:
    """Key path of ``key`` under ``path``: ``join("phases", 1) == "phases[1]"``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def fail(path: str, message: str, value: Any = ..., ) -> ConfigError:
    """Build (not raise) a ConfigError: ``path: message, got value``."""
    if value is ...:
        return ConfigError(f"{path}: {message}")
    return ConfigError(f"{path}: {message}, got {value!r}")


def _typename(value: Any) -> str:
    return type(value).__name__


def require_mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(path or "config", f"must be a mapping, got {_typename(value)}")
    for key in value:
        if not isinstance(key, str):
            raise fail(path or "config", "keys must be strings", key)
    return value


def did_you_mean(word: Any, candidates: Iterable[str]) -> str:
    """``"; did you mean 'pool_factor'?"`` for the closest candidate, or ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(path: str, key: Any, allowed: Iterable[str]) -> str:
    """The message for an unknown key: its path, what is allowed, the closest match."""
    allowed = list(allowed)
    return (f"{join(path, key) if isinstance(key, str) else join(path, str(key))}: unknown key "
            f"(allowed: {', '.join(allowed)}){did_you_mean(key, allowed)}")


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
    """Reject unknown keys, naming the first one, listing what is allowed and the closest."""
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise ConfigError(unknown_key(path, key, allowed))


def as_int(value: Any, path: str, *, minimum: int | None = None,
           maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        # Accept 2.0 written in YAML but not 2.5 or "2".
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise fail(path, "must be an integer", value)
    if minimum is not None and value < minimum:
        raise fail(path, f"must be >= {minimum:g}", value)
    if maximum is not None and value > maximum:
        raise fail(path, f"must be <= {maximum:g}", value)
    return value


def as_float(value: Any, path: str, *, minimum: float | None = None,
             maximum: float | None = None, min_exclusive: bool = False,
             max_exclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(path, "must be a number", value)
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise fail(path, "must be a finite number", value)
    if minimum is not None:
        if min_exclusive and value <= minimum:
            raise fail(path, f"must be > {minimum:g}", value)
        if not min_exclusive and value < minimum:
            raise fail(path, f"must be >= {minimum:g}", value)
    if maximum is not None:
        if max_exclusive and value >= maximum:
            raise fail(path, f"must be < {maximum:g}", value)
        if not max_exclusive and value > maximum:
            raise fail(path, f"must be <= {maximum:g}", value)
    return value


def as_str(value: Any, path: str, *, choices: Iterable[str] | None = None) -> str:
    if not isinstance(value, str):
        raise fail(path, "must be a string", value)
    if choices is not None:
        choices = list(choices)
        if value not in choices:
            raise ConfigError(f"{path}: must be one of {', '.join(choices)}, got {value!r}"
                              f"{did_you_mean(value, choices)}")
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise fail(path, "must be true or false", value)
    return value


def as_list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise fail(path, f"must be a list, got {_typename(value)}")
    return value

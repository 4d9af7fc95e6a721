"""Strict state loading shared by every stateful part: one helper, one exception type.

Every ``load_state_dict(state)`` first runs the part's ``check_state(state, path)``, which
reads ``state`` and changes nothing, then applies it; a part made of parts checks all of them
(under their key paths) before it applies any, so a refused state leaves the object as it
was. The checks below raise :class:`~smartloader.errors.StateError` with a message that
starts with the key path (``state.replay.memory.seen``), says what was expected and shows
what was found.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import torch

from smartloader.errors import StateError

__all__ = ["Stateless", "strict_keys", "StateError", "check_int", "check_number", "check_bool",
           "check_same", "check_tensor", "check_generator_state", "show"]


def show(value: Any) -> str:
    """A short description of ``value`` for an error message."""
    if isinstance(value, torch.Tensor):
        return (f"a tensor of dtype {str(value.dtype).replace('torch.', '')} and shape "
                f"{tuple(value.shape)}")
    if isinstance(value, np.ndarray):
        return f"a numpy array of dtype {value.dtype} and shape {value.shape}"
    if value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "..."
        return text if isinstance(value, (bool, int)) or value is None else \
            f"{text} ({type(value).__name__})"
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if isinstance(value, (Mapping, list, tuple)):
        return f"{article} {name} of length {len(value)}"
    return f"{article} {name}"


def strict_keys(owner: object, state: Any, expected: Iterable[str],
                path: str | None = None) -> None:
    """Raise :class:`~smartloader.errors.StateError` unless ``state`` is a mapping with exactly
    the ``expected`` keys. ``path`` (e.g. ``"state.replay"``) names it in the message;
    without one the owner's class does."""
    where = path or f"{type(owner).__name__}.load_state_dict"
    expected = set(expected)
    if not isinstance(state, Mapping):
        raise StateError(f"{where}: must be a dict, got {show(state)}")
    got = set(state)
    if got != expected:
        missing, unknown = sorted(expected - got, key=str), sorted(got - expected, key=str)
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unknown:
            parts.append(f"unknown keys {unknown} are unexpected")
        raise StateError(f"{where}: {', '.join(parts)}; expected keys {sorted(expected)}")


def check_int(value: Any, path: str, minimum: int | None = 0,
              maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (``None``: unbounded); bools refused."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        if minimum is not None and maximum is not None:
            want = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            want = f"an integer >= {minimum}"
        elif maximum is not None:
            want = f"an integer <= {maximum}"
        else:
            want = "an integer"
        raise StateError(f"{path}: must be {want}, got {show(value)}")
    return value


def check_number(value: Any, path: str, finite: bool = True) -> float:
    """``value`` as a ``float``, finite unless ``finite=False`` (an ``int`` is accepted;
    bools are not)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (finite and not np.isfinite(value))):
        raise StateError(f"{path}: must be a {'finite ' if finite else ''}number, got "
                         f"{show(value)}")
    return float(value)


def check_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise StateError(f"{path}: must be True or False, got {show(value)}")
    return value


def check_same(saved: Any, ours: Any, path: str, owner: str = "part",
               hint: str = "") -> None:
    """Refuse a state saved by a part configured differently (it would continue
    differently): ``path: saved X, this <owner> has Y``."""
    same = type(saved) is type(ours) or (isinstance(saved, (int, float))
                                         and isinstance(ours, (int, float))
                                         and not isinstance(saved, bool)
                                         and not isinstance(ours, bool))
    if not (same and saved == ours):
        raise StateError(f"{path}: saved {saved!r}, this {owner} has {ours!r}; it would "
                         f"continue differently{hint}")


def check_tensor(value: Any, path: str, dtype: torch.dtype | None = None,
                 shape: tuple | None = None, *, ndim: int | None = None,
                 minimum: float | None = None, maximum: float | None = None,
                 finite: bool = False, no_nan: bool = False) -> torch.Tensor:
    """``value`` as a tensor of ``dtype`` and ``shape`` (a tuple; ``None`` entries match any
    size) or ``ndim`` dimensions, whose values are within ``[minimum, maximum]``, finite
    (``finite``) or not NaN (``no_nan``). Reads the values only for the value checks."""
    want = []
    if dtype is not None:
        want.append(f"dtype {str(dtype).replace('torch.', '')}")
    if shape is not None:
        ndim = len(shape)
        want.append("shape (" + ", ".join("n" if s is None else str(s) for s in shape)
                    + ("," if len(shape) == 1 else "") + ")")
    elif ndim is not None:
        want.append(f"{ndim} dimension{'s' if ndim != 1 else ''}")
    kind = "a tensor" + (" of " + " and ".join(want) if want else "")
    if (not isinstance(value, torch.Tensor) or (dtype is not None and value.dtype != dtype)
            or (ndim is not None and value.dim() != ndim)
            or (shape is not None and any(s is not None and s != got
                                          for s, got in zip(shape, value.shape)))):
        raise StateError(f"{path}: must be {kind}, got {show(value)}")
    if value.numel() and (minimum is not None or maximum is not None or finite or no_nan):
        v = value.detach()
        if finite and not bool(torch.isfinite(v).all()):
            raise StateError(f"{path}: must hold finite values, got NaN or infinity")
        if no_nan and v.is_floating_point() and bool(torch.isnan(v).any()):
            raise StateError(f"{path}: must not hold NaN")
        if minimum is not None and bool((v < minimum).any()):
            raise StateError(f"{path}: values must be >= {minimum}, got {v.min().item()}")
        if maximum is not None and bool((v > maximum).any()):
            raise StateError(f"{path}: values must be <= {maximum}, got {v.max().item()}")
    return value


def check_generator_state(value: Any, path: str,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """``value`` as the state of a ``torch.Generator`` on ``device``: a 1-D uint8 tensor
    that such a generator accepts (tried on a scratch generator, not on the part's own)."""
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8
            and value.dim() == 1):
        raise StateError(f"{path}: must be a torch.Generator state (a 1-D uint8 tensor), "
                         f"got {show(value)}")
    device = torch.device(device)
    try:
        scratch = torch.Generator(device=device)
    except RuntimeError:
        raise StateError(f"{path}: a generator on {device} is needed to load it, and that "
                         f"device is not available here") from None
    try:
        scratch.set_state(value.detach().cpu())
    except RuntimeError as exc:
        raise StateError(f"{path}: not a state of a {device.type} torch.Generator "
                         f"({exc})") from None
    return value


class Stateless:
    """The state protocol of a part that keeps no state: ``{}``, and nothing else loads.

    ``state_path`` names the part in a refusal (``state`` unless a class sets its own)."""

    state_path = "state"

    def state_dict(self) -> dict:
        return {}

    def check_state(self, state: Any, path: str | None = None) -> None:
        strict_keys(self, state, (), path or self.state_path)

    def load_state_dict(self, state: Any) -> None:
        self.check_state(state)

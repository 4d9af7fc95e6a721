"""Errors raised by smartloader."""
from __future__ import annotations

from typing import Sequence


class ConfigError(ValueError):
    """An invalid configuration.

    The message always starts with the key path of the offending entry, e.g.
    ``phases[1].beta: must be >= 0, got -1.0``, so a user can find it in the YAML file. When
    a configuration has several problems, the message lists them one per line (the first line
    is the first problem) and :attr:`problems` holds them as a tuple.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        #: every problem found, each starting with its key path
        self.problems: tuple[str, ...] = tuple(problems) if problems else (message,)

    def __reduce__(self):
        return type(self), (self.args[0], self.problems)

    @classmethod
    def of(cls, problems: Sequence[str]) -> "ConfigError":
        """One error listing ``problems``, one per line."""
        return cls("\n".join(problems), problems)


class StateError(ValueError):
    """A state dict that cannot be loaded: a missing, unknown or ill-typed entry, or one
    saved by a run that would continue differently. The message starts with the key path of
    the entry, e.g. ``state.step: must be an integer >= 0, got -1``."""


class BatchError(KeyError):
    """A batch whose input, target or index field cannot be found or told apart. The message
    lists the batch's fields (dtype and shape) and names the config key to set."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProbeError(RuntimeError):
    """The first batch could not be scored by the model: the message names the field that
    went into it (dtype and shape), the model's own error and the key to set."""

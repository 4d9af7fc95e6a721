"""Errors raised by smartloader."""


class ConfigError(ValueError):
    """An invalid configuration.

    The message always starts with the key path of the offending entry, e.g.
    ``phases[1].beta: must be >= 0, got -1.0``, so a user can find it in the YAML file.
    """


class StateError(ValueError):
    """A state dict that cannot be loaded: a missing, unknown or ill-typed entry, or one
    saved by a run that would continue differently. The message starts with the key path of
    the entry, e.g. ``state.step: must be an integer >= 0, got -1``."""

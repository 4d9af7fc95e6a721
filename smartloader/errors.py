"""Errors raised by smartloader."""


class ConfigError(ValueError):
    """An invalid configuration.

    The message always starts with the key path of the offending entry, e.g.
    ``phases[1].beta: must be >= 0, got -1.0``, so a user can find it in the YAML file.
    """

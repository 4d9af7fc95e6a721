"""Find *every* problem in a configuration, not only the first.

:func:`config_problems` is what ``smartloader validate CONFIG.yaml`` prints: the same reading
:func:`~smartloader.config.load_config` does (:func:`~smartloader.config.keys.read_config`),
so the two agree by construction, plus the warnings the loader would log. Each line starts
with its key path; a misspelt key gets a "did you mean ...?" hint.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from smartloader.config.keys import read_config
from smartloader.config.schema import read_yaml
from smartloader.errors import ConfigError

__all__ = ["config_problems", "WARNING"]

#: What starts a warning line: allowed, but probably not what you want.
WARNING = "warning: "


def config_problems(path_or_mapping: "str | os.PathLike | Mapping[str, Any]") -> list[str]:
    """Every problem in a YAML file or mapping, one message each, then the warnings
    (``warning: phases[1].beta: ...``). No line without ``warning:`` means it is valid."""
    if isinstance(path_or_mapping, Mapping):
        raw: Any = path_or_mapping
    else:
        try:
            raw = read_yaml(path_or_mapping)
        except ConfigError as exc:
            return list(exc.problems)
    _, problems, warnings = read_config(raw)
    return problems + [WARNING + w for w in warnings]

"""The configuration: its keys, the frozen Config, and the model of steps vs wrapped batches.

:func:`load_config` reads and validates a YAML file or mapping into a frozen :class:`Config`;
:func:`config_problems` lists every problem of one in a single pass; :data:`TOP` is every
key, declared once (``python -m smartloader keys`` prints it as a table).
"""
from smartloader.config.keys import TOP, read_config
from smartloader.config.problems import config_problems
from smartloader.config.schema import Config, Phase, PhaseSpec, load_config

__all__ = ["Config", "Phase", "PhaseSpec", "load_config", "config_problems", "read_config",
           "TOP"]

"""The configuration: top-level schema, phases, and the model of steps vs wrapped batches.

:func:`load_config` reads and validates a YAML file or mapping into a frozen :class:`Config`;
:func:`config_problems` lists every problem of one in a single pass.
"""
from smartloader.config.schema import Config, Phase, PhaseSpec, load_config

__all__ = ["Config", "Phase", "PhaseSpec", "load_config"]

"""smartloader: wrap any data loader in one line and train on the samples that matter.

>>> import smartloader
>>> loader = smartloader.wrap(loader, model, "config.yaml")   # doctest: +SKIP
>>> for inputs, targets in loader:                           # doctest: +SKIP
...     ...                                                   # the loop is unchanged
"""
from smartloader.config.presets import preset
from smartloader.config.schema import Config, Phase, PhaseSpec, load_config
from smartloader.errors import ConfigError, StateError
from smartloader.pipeline.hard_augment import HardAugmentLoader, HardAugmentStats
from smartloader.api import epochs_for_steps, steps_for_epochs, wrap
from smartloader.pipeline.loader import SmartLoader
from smartloader.common.progress import Progress
from smartloader.selection.ranked import ranked_multinomial
from smartloader.pipeline.stats import StepStats

__version__ = "0.1.0"

__all__ = ["wrap", "preset", "steps_for_epochs", "epochs_for_steps", "SmartLoader", "load_config",
           "Config", "ConfigError", "StateError", "Phase", "PhaseSpec", "Progress",
           "HardAugmentLoader", "HardAugmentStats", "ranked_multinomial", "StepStats",
           "__version__"]

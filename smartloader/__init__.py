"""smartloader: wrap any data loader in one line and train on the samples that matter.

>>> import smartloader
>>> loader = smartloader.wrap(loader, model, "config.yaml")   # doctest: +SKIP
>>> for inputs, targets in loader:                           # doctest: +SKIP
...     ...                                                   # the loop is unchanged
"""
from .config import Config, Phase, PhaseSpec, load_config
from .errors import ConfigError
from .hard_augment import HardAugmentLoader, HardAugmentStats
from .loader import SmartLoader, wrap
from .progress import Progress
from .selection import ranked_multinomial
from .stats import StepStats

__version__ = "0.1.0"

__all__ = ["wrap", "SmartLoader", "load_config", "Config", "ConfigError", "Phase",
           "PhaseSpec", "Progress", "HardAugmentLoader", "HardAugmentStats", "ranked_multinomial", "StepStats", "__version__"]

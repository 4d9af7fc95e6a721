"""Shipped configurations: a plain ``dict`` each, ready for ``wrap()`` or ``yaml.safe_dump``.

``combined`` is the recipe the speed-up benchmark measures: selection, a resolution schedule
and an augmentation-magnitude schedule together, each in its own config section:

- **phases**: uniform warm-up (5%), ranked selection (beta 1), uniform cool-down (10%);
- **scorer**: ``history`` (each sample's last training loss, no extra forward) when the
  batches carry sample ids (``index_key`` given; the loop then calls
  ``loader.report_losses``), else the default low-resolution forward of the live model;
- **resolution**: progressive, from 5/8 of the side up to the full side in four equal
  stages (20, 24, 28, 32 px for 32-px images), full size from 60% of training on (low
  frequencies first: EfficientTrain++; progressive learning: EfficientNetV2);
- **augment**: the magnitude rises linearly from 2.5 to 5 (standard) over the first 80%,
  weaker augmentation early as in EfficientTrain++; read it in the loop as
  ``loader.magnitude.get()``.

``smartloader preset combined --side 32`` prints it as YAML.
"""
from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS", "preset"]


def _combined(side: int, index_key: Any = None) -> dict[str, Any]:
    if not isinstance(side, int) or isinstance(side, bool) or side < 8:
        raise ValueError(f"preset 'combined': side must be the images' side in px (an int "
                         f">= 8), got {side!r}")
    low = round(side * 5 / 8)
    cfg: dict[str, Any] = {
        "phases": [{"name": "warmup", "fraction": 0.05, "selection": "uniform"},
                   {"name": "select", "selection": "ranked", "beta": 1.0},
                   {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}],
        "resolution": {"type": "progressive", "min": low, "max": side, "start": 0.0,
                       "end": 0.8, "increment": max(1, round(side / 8))},
        "augment": {"type": "linear", "min": 2.5, "max": 5.0, "start": 0.0, "end": 0.8},
    }
    if index_key is not None:
        cfg["index_key"] = index_key
        cfg["scorer"] = {"type": "history", "default": "max"}
    return cfg


PRESETS = {"combined": _combined}


def preset(name: str, **kwargs: Any) -> dict[str, Any]:
    """The shipped configuration ``name`` as a fresh ``dict`` (change it freely).

    ``preset("combined", side=32, index_key=2)``: see the module docstring. Unknown names
    raise ``ValueError`` listing the known ones.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name](**kwargs))

"""parse_schedules: the YAML schema, strict validation with key paths, doctests."""
import doctest

import pytest
import yaml

import smartloader.schedules.lr as lr_mod
import smartloader.schedules.magnitude as mag_mod
import smartloader.schedules.resolution as res_mod
from smartloader.errors import ConfigError
from smartloader.schedules import (ConstantResolution, F1CLRSchedule, LinearMagnitude,
                                   LinearScalingSchedule, PiecewiseMagnitude,
                                   ProgressiveResolution, Schedules, SuperProgressiveResolution,
                                   parse_schedules)

RECIPE = yaml.safe_load("""
resolution: {type: super_progressive, min: 96, max: 224, warmup_fraction: 0.05, increment: 32}
score_scale: 0.43
augment: {type: linear, min: 4, max: 6}
lr: {type: f1_clr, max_lr: 0.1, warmup_steps: 500, momentum_high: 0.95, momentum_low: 0.85}
phases: [whatever the core validates]
""")


@pytest.mark.parametrize("module", [lr_mod, mag_mod, res_mod])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_recipe_parses_and_ignores_other_keys():
    s = parse_schedules(RECIPE, total_steps=10_000)
    assert isinstance(s.resolution, SuperProgressiveResolution)
    assert s.resolution(499) == 224 and s.resolution(500) == 96
    assert isinstance(s.augment, LinearMagnitude) and s.augment(5000) == 5.0
    assert isinstance(s.lr, F1CLRSchedule) and s.lr(500) == pytest.approx(0.1)
    assert s.score_scale == 0.43 and s.score_resolution(0) == 96
    assert s.score_resolution(9999) == 96 and s.score_resolution(500) == 41


def test_empty_config_gives_empty_schedules():
    assert parse_schedules({"phases": []}, None) == Schedules()


def test_alternative_forms():
    s = parse_schedules(yaml.safe_load("""
resolution: {type: progressive, min: 128, max: 224, start: 0.0, end: 0.8, increment: 32}
augment: {type: piecewise, points: [[0.0, 2], [0.5, 6], [1.0, 6]]}
lr: {type: linear_scaling, base_lr: 0.1, base_batch_size: 256, batch_size: 1024, warmup_steps: 500}
"""), 1000)
    assert isinstance(s.resolution, ProgressiveResolution) and s.resolution(800) == 224
    assert isinstance(s.augment, PiecewiseMagnitude) and s.augment(250) == 4.0
    assert isinstance(s.lr, LinearScalingSchedule) and s.lr(10_000) == pytest.approx(0.4)
    s = parse_schedules({"resolution": {"type": "constant", "value": 224},
                         "augment": {"type": "constant", "value": 5}}, None)
    assert s.resolution == ConstantResolution(224) and s.augment(3) == 5.0
    assert parse_schedules({"resolution": 160}, None).resolution == ConstantResolution(160)


def test_linear_scaling_without_total_steps_is_fine():
    s = parse_schedules({"lr": {"type": "linear_scaling", "base_lr": 0.1,
                                "batch_size": 512, "warmup_steps": 10}}, None)
    assert s.lr(10) == pytest.approx(0.2)


def test_super_progressive_inherits_lr_warmup():
    s = parse_schedules({"resolution": {"type": "super_progressive", "min": 96, "max": 224},
                         "lr": {"type": "f1_clr", "max_lr": 0.1, "warmup_steps": 300}}, 3000)
    assert s.resolution.warmup_steps == 300
    assert s.resolution(299) == 224 and s.resolution(300) == 96


@pytest.mark.parametrize("config,total,message", [
    ({"resolution": {"type": "progressive", "min": 96, "max": 224}}, None,
     "resolution.type: progressive follows the fraction of training and needs total_steps"),
    ({"lr": {"type": "f1_clr", "max_lr": 0.1, "warmup_steps": 5}}, None,
     "lr.type: f1_clr"),
    ({"augment": {"type": "linear", "min": 4, "max": 6}}, None, "augment.type: linear"),
    ({"resolution": {"type": "constant", "value": 0}}, None,
     "resolution.value: must be >= 1, got 0"),
    ({"resolution": {"type": "progressive", "min": 224, "max": 96}}, 10,
     "resolution.min: must be <= max (96), got 224"),
    ({"resolution": {"type": "progressive", "min": 96, "max": 224, "size": 3}}, 10,
     "resolution.size: unknown key"),
    ({"resolution": {"type": "progressive", "min": "96", "max": 224}}, 10,
     "resolution.min: must be an integer"),
    ({"resolution": {"type": "progressive", "min": 96, "max": 224, "start": 0.9,
                     "end": 0.5}}, 10, "resolution.start: must be < end"),
    ({"resolution": {"type": "zoom"}}, 10, "resolution.type: must be one of"),
    ({"resolution": {"min": 96}}, 10, "resolution.type: required"),
    ({"resolution": [96, 224]}, 10, "resolution: must be a mapping"),
    ({"resolution": {"type": "super_progressive", "min": 96, "max": 224}}, 10,
     "resolution.warmup_steps: required"),
    ({"resolution": {"type": "super_progressive", "min": 96, "max": 224,
                     "warmup_steps": 5, "warmup_fraction": 0.1}}, 10,
     "resolution.warmup_fraction: give warmup_steps or warmup_fraction, not both"),
    ({"resolution": {"type": "super_progressive", "min": 96, "max": 224,
                     "warmup_steps": 10}}, 10, "resolution.warmup_steps: must be < total_steps"),
    ({"resolution": {"type": "constant", "value": True}}, 10,
     "resolution.value: must be an integer"),
    ({"augment": {"type": "linear", "min": 6, "max": 4}}, 10, "augment.min: must be <= max"),
    ({"augment": {"type": "constant", "value": 11}}, 10, "augment.value: must be <= 10"),
    ({"augment": {"type": "piecewise", "points": [[0.5, 2], [0.5, 3]]}}, 10,
     "augment.points[1][0]: fractions must increase strictly"),
    ({"augment": {"type": "piecewise", "points": [[0.5, 2, 1]]}}, 10,
     "augment.points[0]: must be [fraction, value]"),
    ({"augment": {"type": "piecewise", "points": []}}, 10, "augment.points: must not be empty"),
    ({"lr": {"type": "f1_clr", "max_lr": 0.1}}, 10, "lr.warmup_steps: required"),
    ({"lr": {"type": "f1_clr", "max_lr": 0, "warmup_steps": 1}}, 10, "lr.max_lr: must be > 0"),
    ({"lr": {"type": "f1_clr", "max_lr": 0.1, "warmup_steps": 1, "momentum_low": 0.99}}, 10,
     "lr.momentum_low: must be <= momentum_high"),
    ({"lr": {"type": "linear_scaling", "base_lr": 0.1, "batch_size": 0,
             "warmup_steps": 1}}, 10, "lr.batch_size: must be >= 1"),
    ({"lr": {"type": "linear_scaling", "base_lr": 0.1, "batch_size": 8, "warmup_steps": 1,
             "decay": "step"}}, 10, "lr.decay: must be one of none, cosine"),
    ({"score_scale": 1.5}, 10, "score_scale: must be <= 1"),
    ({"score_scale": 0}, 10, "score_scale: must be > 0"),
])
def test_config_errors_name_the_key(config, total, message):
    with pytest.raises(ConfigError) as info:
        parse_schedules(config, total)
    assert str(info.value).startswith(message), str(info.value)


def test_config_must_be_mapping():
    with pytest.raises(ConfigError, match="^config: must be a mapping"):
        parse_schedules([1, 2], 10)

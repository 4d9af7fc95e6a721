import pytest

import smartloader
from smartloader import ConfigError, load_config
from helpers import scorer_model


@pytest.mark.parametrize("raw, message", [
    ({"phases": [{"name": "a", "selection": "ranked", "beta": -1.0}]},
     "phases[0].beta: must be >= 0, got -1.0"),
    ({"pool_factr": 2}, "pool_factr: unknown key (allowed: seed, total_steps"),
    ({"phases": [{"name": "a", "stesp": 5}]}, "phases[0].stesp: unknown key"),
    ({"pool_factor": "2"}, "pool_factor: must be an integer, got '2'"),
    ({"pool_factor": 2.5}, "pool_factor: must be an integer, got 2.5"),
    ({"seed": True}, "seed: must be an integer, got True"),
    ({"score_resolution": 0}, "score_resolution: must be >= 1, got 0"),
    ({"autocast": "fp8"}, "autocast: must be one of bfloat16, float16, got 'fp8'"),
    ({"phases": [{"name": "a", "selection": "greedy"}]},
     "phases[0].selection: must be one of uniform, ranked, topk, selective_backprop, got 'greedy'"),
    ({"phases": [{"name": "a", "selection": "uniform", "beta": 1.0}]},
     "phases[0].beta: selection 'uniform' has no beta"),
    ({"phases": [{"steps": 3}]}, "phases[0].name: required"),
    ({"phases": [{"name": "a", "steps": 0}]}, "phases[0].steps: must be >= 1, got 0"),
    ({"total_steps": 10, "phases": [{"name": "a", "fraction": 1.5}]},
     "phases[0].fraction: must be <= 1, got 1.5"),
    ({"total_steps": 10, "phases": [{"name": "a", "steps": 5, "fraction": 0.5}]},
     "phases[0]: give either steps or fraction, not both"),
    ({"phases": [{"name": "a"}, {"name": "a", "steps": 2}]},
     "phases[1].name: 'a' is already the name of phases[0]"),
    ({"phases": [{"name": "a"}, {"name": "b"}]},
     "phases[1]: has no length, but phases[0] already takes the rest"),
    ({"total_steps": 10, "phases": [{"name": "a", "steps": 4}, {"name": "b", "steps": 4}]},
     "phases: lengths add up to 8 steps, but total_steps is 10"),
    ({"total_steps": 10, "phases": [{"name": "a", "steps": 12}, {"name": "b"}]},
     "phases[1] (b): takes the rest of total_steps 10, but the other phases already use 12"),
    ({"phases": [{"name": "c", "fraction": 0.1}]},
     "total_steps: required because phases[0] (c) uses fraction: 0.1"),
    ({"phases": [{"name": "a"}, {"name": "b", "steps": 5}]},
     "total_steps: required because phases[0] (a) has no length and is not the last"),
    ({"total_steps": 100, "phases": [{"name": "a", "fraction": 0.001}, {"name": "b"}]},
     "phases[0].fraction: 0.001 of total_steps 100 is less than one step"),
    ({"pool_factor": 1}, "pool_factor: must be >= 2 when a phase selects"),
    ({"phases": []}, "phases: must list at least one phase"),
    ({"phases": {"name": "a"}}, "phases: must be a list, got dict"),
    ({"input_key": 1.5}, "input_key: must be an integer position or a string key, got 1.5"),
    ([1, 2], "config: must be a mapping, got list"),
])
def test_bad_config_names_key_and_value(raw, message):
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, ValueError)


def test_defaults_reproduce_the_paper():
    cfg = load_config({"total_steps": 1000})
    assert cfg.pool_factor == 2 and cfg.seed == 0
    phases = cfg.resolve_phases()
    assert [(p.name, p.start, p.stop, p.selection, p.beta) for p in phases] == [
        ("warmup", 0, 50, "uniform", 0.0), ("select", 50, 900, "ranked", 1.0),
        ("cooldown", 900, 1000, "uniform", 0.0)]
    open_ended = load_config(None).resolve_phases()
    assert [(p.name, p.stop) for p in open_ended] == [("warmup", 100), ("select", None)]


def test_yaml_file_and_wrap_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\ntotal_steps: 1000\npool_factor: 2\nscore_resolution: 96\n"
                    "phases:\n  - {name: warmup, steps: 500, selection: uniform}\n"
                    "  - {name: select, selection: ranked, beta: 1.0}\n"
                    "  - {name: cooldown, fraction: 0.1, selection: uniform}\n")
    cfg = load_config(path)
    assert cfg.seed == 3 and cfg.score_resolution == 96
    assert [(p.start, p.stop) for p in cfg.resolve_phases()] == [(0, 500), (500, 900),
                                                                 (900, 1000)]
    loader = smartloader.wrap([], scorer_model(), str(path), pool_factor=4, seed=7)
    assert loader.config.pool_factor == 4 and loader.config.seed == 7
    with pytest.raises(ConfigError, match="pool_factr: unknown key"):
        smartloader.wrap([], scorer_model(), str(path), pool_factr=4)
    with pytest.raises(ConfigError, match="total_steps: must be >= 1"):
        smartloader.wrap([], scorer_model(), str(path), total_steps=0)
    (tmp_path / "bad.yaml").write_text("phases: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_to_dict():
    cfg = load_config({"total_steps": 20, "input_key": ["meta", 0], "phases": [
        {"name": "w", "steps": 5}, {"name": "s", "selection": "ranked", "beta": 0.5}]})
    assert load_config(cfg.to_dict()) == cfg
    assert cfg.input_key == ("meta", 0)


def test_every_yaml_example_in_docs_loads():
    import pathlib
    import re

    import yaml
    root = pathlib.Path(__file__).resolve().parents[2]
    blocks = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S):
            blocks.append((doc.name, block))
    core = [b for b in blocks if b[0] in ("README.md", "config.md")]
    assert len(core) >= 3, "README.md and docs/config.md should carry YAML examples"
    for name, block in core:
        data = yaml.safe_load(block)
        load_config(data)  # raises with the key path if a doc drifted


def test_overrides_apply_before_validation():
    """A schedule that follows the fraction of training needs total_steps; passing it as an
    override (``wrap(..., total_steps=N)``) must satisfy it, as if it were in the file."""
    from smartloader import ConfigError, load_config
    res = {"type": "super_progressive", "min": 16, "max": 32, "increment": 8,
           "warmup_fraction": 0.05}
    with pytest.raises(ConfigError, match="total_steps"):
        load_config({"resolution": res})
    cfg = load_config({"resolution": res}, total_steps=100)
    assert cfg.total_steps == 100
    # the override wins over the mapping's own value, and a Config takes overrides too
    assert load_config({"total_steps": 50}, total_steps=70).total_steps == 70
    assert load_config(cfg, total_steps=200).total_steps == 200
    with pytest.raises(ConfigError, match="total_stepz"):
        load_config({}, total_stepz=3)


def test_wrap_total_steps_override_satisfies_fractional_schedule():
    import torch
    import smartloader
    batches = [(torch.rand(4, 3, 32, 32), torch.randint(0, 3, (4,))) for _ in range(4)]
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(2, 3))
    res = {"type": "super_progressive", "min": 16, "max": 32, "increment": 8,
           "warmup_fraction": 0.25}
    loader = smartloader.wrap(batches, model, {"resolution": res, "phases": [
        {"name": "all", "selection": "uniform"}]}, total_steps=4)
    sizes = [x.shape[-1] for x, _ in loader]
    assert sizes == [32, 16, 24, 32]  # full size in the warm-up, then 16 -> 32 in stages

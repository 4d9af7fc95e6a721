"""Shipped presets: valid configs, the documented schedule, the CLI that prints them."""
import re

import pytest
import yaml

import smartloader
from smartloader.__main__ import main
from smartloader.schedules.resolution import resolution_grid


@pytest.mark.parametrize("side, grid", [(32, [20, 24, 28, 32]), (28, [18, 20, 24, 28]),
                                        (224, [140, 168, 196, 224])])
def test_combined_preset_is_a_valid_config_with_four_resolution_stages(side, grid):
    cfg = smartloader.preset("combined", side=side)
    loaded = smartloader.load_config(dict(cfg, total_steps=1000))
    r = cfg["resolution"]
    assert resolution_grid(r["min"], r["max"], r["increment"]) == grid
    sched = loaded.schedules.resolution
    assert [sched(s) for s in (0, 199, 200, 400, 600, 999)] == \
        [grid[0], grid[0], grid[1], grid[2], grid[3], grid[3]]
    assert loaded.schedules.augment(0) == 2.5 and loaded.schedules.augment(800) == 5.0
    assert "scorer" not in cfg and "index_key" not in cfg   # the forward scorer by default


def test_combined_preset_with_ids_scores_from_the_loss_table():
    cfg = smartloader.preset("combined", side=32, index_key="index")
    assert cfg["index_key"] == "index" and cfg["scorer"] == {"type": "history", "default": "max"}
    a, b = smartloader.preset("combined", side=32), smartloader.preset("combined", side=32)
    a["phases"][1]["beta"] = 3.0
    assert b["phases"][1]["beta"] == 1.0          # a fresh dict each call


def test_bad_preset_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown preset 'combine'; known: combined"):
        smartloader.preset("combine", side=32)
    with pytest.raises(ValueError, match=r"side must be the images' side in px .* got 4"):
        smartloader.preset("combined", side=4)


def test_preset_command_prints_yaml_that_plans(tmp_path, capsys):
    assert main(["preset", "combined", "--side", "32", "--index-key", "2",
                 "--total-steps", "1000"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "sl.yaml"
    path.write_text(text)
    cfg = yaml.safe_load(text)
    assert cfg["index_key"] == 2 and cfg["total_steps"] == 1000
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "scoring: a loss table (no forward of the model)" in out
    # no scoring forward is modelled: the cost is the resolution factor alone
    assert re.search(r"^50-199\s+select\s+ranked\s+1\s+20\s+table\s", out, re.M)
    assert "compute vs uniform full resolution: 0.744 (resolution factor 0.744, scoring " \
           "overhead +0.0%" in out

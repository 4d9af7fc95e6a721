"""`smartloader plan` and `smartloader validate` on files in tmp_path."""
import pathlib
import re

import pytest

from smartloader import load_config
from smartloader.__main__ import main
from smartloader.tools.cli import plan_inputs
from smartloader.tools.plan import plan_rows, plan_summary

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "imagenet_thesis.yaml"


def test_plan_thesis_recipe_numbers(capsys):
    assert main(["plan", str(RECIPE)]) == 0
    out = capsys.readouterr().out
    inputs = plan_inputs(load_config(RECIPE))
    s = plan_summary(plan_rows(**inputs))
    # the printed estimate is plan_summary's, to the printed precision
    m = re.search(r"compute vs uniform full resolution: ([\d.]+) \(resolution factor "
                  r"([\d.]+), scoring overhead \+([\d.]+)%", out)
    assert m, out
    assert float(m[1]) == pytest.approx(s["relative_compute"], abs=5e-4)
    assert float(m[2]) == pytest.approx(s["resolution_factor"], abs=5e-4)
    assert float(m[3]) == pytest.approx(100 * s["scoring_overhead"], abs=0.05)
    # five training stages 96..224 and their scoring sizes round(0.43 r)
    assert "distinct input shapes: 10 (training [96, 128, 160, 192, 224], scoring " \
           "[41, 55, 69, 83, 96])" in out
    assert s["distinct_shapes"] == 10
    # super progressive: 224 during the 25k-step lr warm-up, 55k-step stages after it
    assert re.search(r"^0-24999\s+warmup\s+uniform\s+-\s+224\s+-", out, re.M)
    assert re.search(r"^25000-79999\s+select\s+ranked\s+1\s+96\s+41\s", out, re.M)
    assert re.search(r"^270000-299999\s+cooldown\s+uniform\s+-\s+224\s+-", out, re.M)
    # by hand: mean (r/224)^2 over the steps, and 2/3 (r_hat/r)^2 on the select steps
    stages = [(25_000, 224, None), (55_000, 96, 41), (55_000, 128, 55), (55_000, 160, 69),
              (55_000, 192, 83), (25_000, 224, 96), (30_000, 224, None)]
    res = sum(n * (r / 224) ** 2 for n, r, _ in stages) / 300_000
    cost = sum(n * (r / 224) ** 2 * (1 + (2 / 3 * (h / r) ** 2 if h else 0))
               for n, r, h in stages) / 300_000
    assert s["resolution_factor"] == pytest.approx(res)
    assert s["relative_compute"] == pytest.approx(cost)


def test_plan_plot_and_vit(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "plan.png"
    assert main(["plan", str(RECIPE), "--plot", str(png), "--arch", "vit"]) == 0
    assert png.stat().st_size > 1000
    assert ", vit)" in capsys.readouterr().out


def test_plan_without_schedules_uses_base_resolution(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("total_steps: 100\nscore_resolution: 64\n")
    assert main(["plan", str(cfg), "--base-resolution", "128"]) == 0
    out = capsys.readouterr().out
    assert "training [128], scoring [64]" in out


def test_plan_needs_total_steps(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    assert main(["plan", str(cfg)]) == 1
    assert "total_steps: required" in capsys.readouterr().err


def test_validate_reports_every_problem(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("total_steps: 1000\n"
                   "resolution: {type: progressive, min: 300, max: 224}\n"
                   "phases:\n"
                   "  - {name: warmup, steps: 100}\n"
                   "  - {name: select, selection: ranked, beta: -1}\n")
    assert main(["validate", str(cfg)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("resolution.min: must be <= max (224)")
    assert lines[1].startswith("phases[1].beta: must be >= 0")


def test_validate_ok_and_relations(tmp_path, capsys):
    assert main(["validate", str(RECIPE)]) == 0
    assert capsys.readouterr().out.strip() == "OK"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("score_scale: 0.43\nscore_resolution: 96\nbogus: 1\n")
    assert main(["validate", str(cfg)]) == 1
    # one run lists the unknown key and the relation between the valid keys
    assert capsys.readouterr().out.strip().splitlines() == [
        "bogus: unknown key (allowed: seed, total_steps, total_epochs, pool_factor, "
        "score_resolution, "
        "autocast, input_key, target_key, phases, selection_scope, resolution, score_scale, augment, lr, index_key, scorer, noisy_guard, batch_transform, replay, pool_source)",
        "score_scale, score_resolution: give one, not both (score_scale 0.43 follows the "
        "training resolution, score_resolution 96 fixes it)"]
    cfg.write_text("score_scale: 0.43\nscore_resolution: 96\n")
    assert main(["validate", str(cfg)]) == 1
    assert "score_scale, score_resolution" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "no such file" in capsys.readouterr().out


def test_commands_listed(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "plan" in out and "validate" in out


def test_plan_total_epochs_needs_and_uses_batches_per_epoch(tmp_path, capsys):
    cfg = tmp_path / "epochs.yaml"
    cfg.write_text("total_epochs: 10\n")
    assert main(["plan", str(cfg)]) == 1
    assert "give --batches-per-epoch N" in capsys.readouterr().err
    assert main(["plan", str(cfg), "--batches-per-epoch", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("total_steps 217, pool_factor 2")   # as wrap() derives it
    assert "195-216  cooldown" in out


@pytest.mark.parametrize("cache, shown", [
    ("true, cache_max_gb: 2", "views cached in memory, at most 2 GiB"),
    ("false", "views not cached: every pool decodes its views; cache: true loads each once"),
    ("true, cache_dir: /data/views", "views cached in /data/views (on disk; smartloader views "
                                     "fills it before training)"),
])
def test_plan_shows_the_two_resolution_view_cache(tmp_path, capsys, cache, shown):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"total_steps: 100\npool_source: {{type: two_resolution, size: 48, "
                   f"cache: {cache}}}\n")
    assert main(["plan", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "low_res views at 48 px" in out and shown in out

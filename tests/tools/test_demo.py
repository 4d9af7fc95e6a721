import re

import pytest
import torch

from smartloader.__main__ import main
from smartloader.tools.demo import RunResult, compare, steps_to_target, verdict


def _r(name, fraction, steps, wall, acc):
    return RunResult(name, fraction, steps, wall, 0.0, acc)


def test_steps_to_target_interpolates_between_the_budgets_around_it():
    runs = [_r("x", 0.5, 50, 5.0, 0.60), _r("x", 0.75, 75, 7.5, 0.70), _r("x", 1.0, 100, 10, 0.74)]
    steps, why = steps_to_target(runs, 0.65)
    assert steps == pytest.approx(62.5) and why == "interpolated"
    assert steps_to_target(runs, 0.55) == (50.0, "at most")
    steps, why = steps_to_target(runs, 0.80)
    assert steps is None and why == "not reached (best 74.00%)"


def test_compare_multiplies_steps_to_target_by_the_per_step_cost():
    results = [_r("uniform", 1.0, 100, 10.0, 0.70), _r("smartloader", 1.0, 100, 11.0, 0.74),
               _r("uniform", 0.5, 50, 5.0, 0.60), _r("smartloader", 0.5, 50, 5.5, 0.66)]
    c = compare(results)
    assert c["target"] == 0.70 and c["uniform_steps"] == 100
    assert c["per_step_cost"] == pytest.approx(1.1)
    assert c["smartloader_steps"] == pytest.approx(50 + 50 * (0.04 / 0.08))   # 75 steps
    assert c["speedup"] == pytest.approx(100 / (75 * 1.1))
    assert "1.21x faster than uniform" in verdict(c)


def test_no_win_is_said_plainly():
    results = [_r("uniform", 1.0, 100, 10.0, 0.70), _r("smartloader", 1.0, 100, 10.0, 0.69),
               _r("uniform", 0.5, 50, 5.0, 0.60), _r("smartloader", 0.5, 50, 5.0, 0.58)]
    text = verdict(compare(results))
    assert "NO WIN on this data: SmartLoader did not reach uniform's accuracy" in text
    slower = [_r("uniform", 1.0, 100, 10.0, 0.70), _r("smartloader", 1.0, 100, 12.0, 0.71),
              _r("uniform", 0.5, 50, 5.0, 0.60), _r("smartloader", 0.5, 50, 6.0, 0.62)]
    assert "NO WIN on this data: SmartLoader needs" in verdict(compare(slower))


@pytest.mark.slow
def test_demo_runs_the_paired_budgets_and_writes_the_plot(capsys, tmp_path):
    before = torch.random.get_rng_state()
    plot = tmp_path / "demo.svg"
    assert main(["demo", "--steps", "24", "--budgets", "0.5", "1.0", "--batch-size", "32",
                 "--quiet", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()
            if len(line.split()) > 2 and line.split()[0] in ("uniform", "smartloader")
            and re.fullmatch(r"[\d.]+x", line.split()[1])]
    # interleaved: the full budget first, uniform then SmartLoader, then the half budget
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("uniform", "1x", "24"), ("smartloader", "1x", "24"),
        ("uniform", "0.5x", "12"), ("smartloader", "0.5x", "12")]
    assert all(re.fullmatch(r"\d+\.\d\d%", r[-1]) for r in rows)
    # columns: run budget steps <wall> s <per step> ms <overhead> accuracy
    assert rows[0][7] == "-" and re.fullmatch(r"\(\d+\.\d%\)", rows[1][9])  # overhead share
    for key in ("target: uniform's accuracy at its full budget", "per-step cost: SmartLoader",
                "steps to target: uniform"):
        assert key in out
    assert ("time to the same accuracy: SmartLoader" in out) != ("NO WIN on this data" in out)
    svg = plot.read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "target" in svg
    assert torch.equal(before, torch.random.get_rng_state())


def test_budgets_must_include_the_full_one(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--budgets", "0.5"])
    assert "--budgets must lie in (0, 1] and include 1.0" in capsys.readouterr().err


def test_unknown_command_is_an_error(capsys):
    assert main(["demoo"]) == 2
    assert "unknown command 'demoo'" in capsys.readouterr().err

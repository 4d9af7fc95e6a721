"""The training examples in adapters/ run, train through their adapter, and report honestly.

Each example runs in its own process (as a user runs it: ``python adapters/X_train.py --quick
--out DIR``), so FFCV's numba and DALI never share an interpreter here. What is checked:

- the run ends with the steps it planned and an accuracy well above chance (10 classes);
- the adapter really loaded the data: its file (a .beton / PNG files) is in ``--out``, and the
  image sizes the adapter decoded match, batch for batch, what smartloader's own step model
  (``loader_batch_steps``) and the config's resolution schedule say each step needed;
- the selection phase trained on more of the planted hard samples than the data holds;
- the printed summary line agrees with ``result.json``.
"""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import smartloader
from smartloader.config.steps import loader_batch_steps

ROOT = Path(__file__).resolve().parents[2]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:           # a missing parent package (``nvidia``)
        return False


def run_example(name: str, out: Path, *args: str) -> tuple[dict, str]:
    # A script's sys.path starts at adapters/, so name this checkout: otherwise an installed
    # smartloader (e.g. another checkout's editable install) would be the one tested.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.run([sys.executable, str(ROOT / "adapters" / name), "--quick",
                           "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert f"smartloader from {ROOT / 'smartloader'}" in proc.stdout, proc.stdout[:500]
    return json.loads((out / "result.json").read_text()), proc.stdout


def expected_loads(result: dict) -> Counter:
    """Loader batches per decoded size that the run needs: each batch at the resolution of
    the step it feeds, up to the last trained step."""
    cfg = smartloader.load_config(result["config"])
    resolution = cfg.schedules.resolution
    want = Counter()
    for _, _, step in loader_batch_steps(cfg, result["batches_per_epoch"]):
        if step >= result["steps"]:
            break
        want[str(resolution(step))] += 1
    return want


def check_summary(name: str, stdout: str, result: dict) -> None:
    last = re.search(rf"^{name}: (\d+) steps, ([\d.]+) s, test accuracy ([\d.]+)%$", stdout,
                     flags=re.M)
    assert last, stdout
    assert int(last[1]) == result["steps"]
    assert float(last[2]) == pytest.approx(result["wall_s"], abs=0.06)
    assert float(last[3]) == pytest.approx(100 * result["accuracy"], abs=0.006)


def check_training(result: dict) -> None:
    assert result["steps"] == result["total_steps"] == result["config"]["total_steps"]
    assert isinstance(result["accuracy"], float) and 0.0 <= result["accuracy"] <= 1.0
    assert result["accuracy"] > 0.3, f"accuracy {result['accuracy']:.3f} (chance is 0.1)"
    assert result["wall_s"] > 0
    share = result["hard_share_trained"]
    assert set(share) == {"warmup", "select", "cooldown"}
    assert share["select"] > result["hard_share_data"] + 0.03, share


@pytest.mark.slow
@pytest.mark.skipif(not installed("ffcv"), reason="ffcv not installed (bash adapters/install.sh)")
def test_ffcv_example_trains_from_a_beton_at_the_scheduled_sizes(tmp_path):
    result, stdout = run_example("ffcv_train.py", tmp_path)
    assert (result["adapter"], result["loader"]) == ("ffcv", "RecordingFFCVAdapter")
    beton = tmp_path / "train.beton"
    assert result["beton"] == str(beton) and beton.stat().st_size == result["beton_bytes"] > 0
    assert result["batches_per_epoch"] * 32 == result["train_images"] == 512
    check_training(result)
    check_summary("ffcv_train", stdout, result)
    # FFCV decodes one size per epoch; the plan puts each 4-px stage on an epoch start.
    decoded = [tuple(e["decoded"]) for e in result["per_epoch"]]
    assert decoded == [(s, s) for s in (16, 20, 20, 24, 24, 28, 28, 32)]
    assert [list(e["phases"]) for e in result["per_epoch"]] == (
        [["warmup"]] + [["select"]] * 6 + [["cooldown"]])
    assert sum(e["steps"] for e in result["per_epoch"]) == result["steps"] == 80
    assert result["loaded_batches_by_size"] == expected_loads(result) == {
        "16": 16, "20": 32, "24": 32, "28": 32, "32": 16}


@pytest.mark.slow
@pytest.mark.skipif(not (installed("nvidia.dali") and installed("PIL")),
                    reason="nvidia-dali or pillow not installed (bash adapters/install.sh)")
def test_dali_example_trains_from_png_files_at_the_scheduled_sizes(tmp_path):
    result, stdout = run_example("dali_train.py", tmp_path, "--steps", "48")
    assert (result["adapter"], result["loader"]) == ("dali", "RecordingDALIAdapter")
    pngs = sorted((tmp_path / "train").glob("*.png"))
    assert len(pngs) == result["files"] == 512
    assert result["batches_per_epoch"] == 16
    check_training(result)
    check_summary("dali_train", stdout, result)
    assert result["steps"] == 48
    # DALI resizes per batch: every pool was decoded at its own step's resolution, stages
    # starting mid-epoch included.
    want = expected_loads(result)
    assert result["loaded_batches_by_size"] == want and set(want) == {"16", "20", "24", "28",
                                                                      "32"}
    cfg = smartloader.load_config(result["config"])
    res = cfg.schedules.resolution
    sizes = [(batch, res(step)) for batch, _, step in
             itertools.takewhile(lambda b: b[2] < 48, loader_batch_steps(cfg, 16))]
    changes = [b for (b, r), (_, before) in zip(sizes[1:], sizes) if r != before]
    assert len(changes) == 4 and any(b % 16 for b in changes), changes  # mid-epoch ones
    assert result["trained_steps_by_size"] == {
        str(k): v for k, v in sorted(Counter(res(s) for s in range(48)).items())}

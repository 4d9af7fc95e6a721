"""The flagship CIFAR-10 example runs end to end on a tiny CIFAR-10-format directory.

The real dataset is not used (tests make their own data): five ``data_batch_i.bin`` files of
64 random records each, in the official binary layout (1 label byte + 3072 pixel bytes).
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "cifar10_flagship.py")


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        rec = rng.integers(0, 256, size=(64, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, size=64)
        rec.tofile(d / f"data_batch_{i}.bin")
    return str(d)


def _run(args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("uniform", [False, True])
def test_flagship_trains_and_reports(cifar_dir, uniform):
    steps = 12
    r = _run([cifar_dir, "--steps", str(steps)] + (["--uniform"] if uniform else []))
    assert r.returncode == 0, r.stderr[-2000:]
    name = "uniform" if uniform else "smartloader"
    m = re.search(rf"^{name}: (\d+) steps, ([\d.]+) s, validation accuracy \(data_batch_5\) "
                  rf"([\d.]+)%$", r.stdout, re.M)
    assert m, r.stdout[-2000:]
    assert int(m.group(1)) == steps
    assert 0.0 <= float(m.group(3)) <= 100.0
    if not uniform:  # SmartLoader's statistics are printed (history scorer: no forwards)
        assert "forwards_skipped=" in r.stdout, r.stdout[-2000:]

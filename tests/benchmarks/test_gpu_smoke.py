"""benchmarks/gpu/run.sh --smoke: the GPU benchmark's code paths, on the CPU, end to end."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_run_script_smoke_mode_writes_every_result(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable)
    # its own process group, so a timeout stops the script's children too (none may outlive
    # the test and load the machine)
    proc = subprocess.Popen(["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), "--smoke"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=550)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    bench = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert bench["device"] == "cpu" and bench["overhead"]["timer"] == "perf_counter"
    assert bench["overhead"]["smartloader_next_s_median"] > 0
    runs = {(r["method"], r["fraction"]) for r in bench["runs"]}
    assert runs == {("uniform", 1.0), ("uniform", 0.7), ("smartloader", 1.0),
                    ("smartloader", 0.7)}
    assert all(0.0 <= r["final_acc"] <= 1.0 and r["steps"] > 0 for r in bench["runs"])
    for adapter, module in (("dali", "nvidia.dali"), ("ffcv", "ffcv")):
        try:
            __import__(module)
        except ImportError:
            assert "is not installed" in (tmp_path / f"{adapter}.log").read_text()
            continue
        result = json.loads((tmp_path / f"{adapter}_result.json").read_text())
        assert result["device"] == "cpu" and result["image_device"] == "cpu"
        assert result["steps"] > 0 and result["hard_share_trained"]

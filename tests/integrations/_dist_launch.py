"""Start a launcher (``accelerate launch``, ``torchrun``) as a bounded, killable subprocess.

Each command runs in its own session with the repository root on ``PYTHONPATH`` and one
thread per process; on a timeout or a failure the whole process group is killed, so no
worker outlives its test.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(name: str) -> str:
    """The console script ``name`` installed next to this Python."""
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable}")
    return str(path)


def env(tmp: Path, **extra: str) -> dict:
    e = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
             HF_HOME=str(tmp / "hf_home"), PYTHONUNBUFFERED="1")
    e.update(extra)
    return e


def start(cmd: list[str], tmp: Path, log: str, **extra: str) -> subprocess.Popen:
    """Start ``cmd`` in ``tmp``; its output goes to ``tmp/<log>.log`` (a file, not a pipe,
    so a chatty process cannot block while another one is being waited for)."""
    with open(tmp / f"{log}.log", "w") as f:
        proc = subprocess.Popen(cmd, cwd=str(tmp), env=env(tmp, **extra),
                                start_new_session=True, stdout=f, stderr=subprocess.STDOUT)
    proc.log = tmp / f"{log}.log"  # type: ignore[attr-defined]
    return proc


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(procs: list[subprocess.Popen], timeout_s: float, what: str) -> list[str]:
    """Wait for ``procs`` (sharing one deadline); their outputs. Kills every group and fails
    the test on a timeout or a non-zero exit."""
    deadline = time.monotonic() + timeout_s
    failed = None
    try:
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                failed = f"{what}: still running after {timeout_s:.0f}s (killed)"
                break
            if p.returncode != 0:
                failed = f"{what}: {p.args[0]} exited {p.returncode}"
                break
    finally:
        for p in procs:
            kill(p)  # also any grandchild left in its group
            if p.poll() is None:
                p.wait(5)
    outs = [p.log.read_text(errors="replace") for p in procs]
    if failed:
        pytest.fail(failed + "\n" + "\n----\n".join(o[-6000:] for o in outs if o))
    return outs


def run(cmd: list[str], tmp: Path, timeout_s: float, what: str, **extra: str) -> str:
    """Run one command to its end; its output."""
    return finish([start(cmd, tmp, what, **extra)], timeout_s, what)[0]

"""SmartLoader under a real ``accelerate launch``: 2 CPU processes (gloo), then a resumed launch.

``_accelerate_worker.py`` trains a tiny model with ``gradient_accumulation_steps=2`` on 104
indexed samples (26 batches, 13 per process); each process writes what it saw. The accelerate
config (docs/accelerate.md's) asks for ``distributed_type: MULTI_GPU`` with ``use_cpu: true``: that is what starts
several CPU processes (``accelerate launch --cpu --num_processes 2`` without an MPI hostfile
runs a single process).
"""
from __future__ import annotations

import json
import re
import sys

import pytest

from _dist_launch import ROOT, cli, free_port, run

pytest.importorskip("accelerate")

WORKER = ROOT / "tests" / "integrations" / "_accelerate_worker.py"
TIMEOUT_S = 150
CUT = 8  # saved after step 8: 2 steps into epoch 1, after an optimizer step
# the CPU multi-process config docs/accelerate.md gives (so the page cannot drift)
DOC = (ROOT / "docs" / "accelerate.md").read_text()
CONFIG = re.search(r"```yaml\n(.*?)```", DOC, re.S).group(1)


def _launch(tmp, mode: str) -> list[dict]:
    config = tmp / "accelerate.yaml"
    config.write_text(CONFIG)
    run([cli("accelerate"), "launch", "--config_file", str(config), "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()), str(WORKER), "--out", str(tmp),
         "--mode", mode, "--cut", str(CUT)], tmp, TIMEOUT_S, f"accelerate launch ({mode})")
    return [json.loads((tmp / f"{mode}_rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accelerate")
    return _launch(tmp, "full"), _launch(tmp, "resume")


def _per_epoch(steps: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for s in steps:
        out.setdefault(s["epoch"], []).append(s)
    return out


def _expected_syncs(steps_per_epoch: list[int], k: int) -> list[bool]:
    """accelerate's rule: every k-th step of an epoch, and the epoch's last step."""
    return [(i + 1) % k == 0 or i == n - 1 for n in steps_per_epoch for i in range(n)]


@pytest.mark.slow
def test_equal_steps_on_disjoint_shards(launched):
    full, _ = launched
    assert [r["world"] for r in full] == [2, 2]
    # 13 batches per process: warm-up 2 + pools of 3,3,3,2 -> 6 steps; then 3,3,3,3,1 -> 5
    assert [[len(e) for e in _per_epoch(r["steps"]).values()] for r in full] == [[6, 5, 5]] * 2
    assert full[0]["total_steps"] == full[1]["total_steps"] == 16
    for epoch in range(3):
        s0, s1 = (set(r["shards"][epoch]) for r in full)
        assert len(s0) == len(s1) == 52 and not s0 & s1 and s0 | s1 == set(range(104))
        for r, shard in zip(full, (s0, s1)):
            seen = [i for s in _per_epoch(r["steps"])[epoch] for i in s["index"]]
            assert set(seen) <= shard
            assert all(len(s["index"]) == 4 for s in _per_epoch(r["steps"])[epoch])
    assert full[0]["shards"][0] != full[0]["shards"][1]  # reshuffled per epoch (set_epoch)


@pytest.mark.slow
def test_gradient_accumulation_syncs_every_k_steps_and_at_epoch_end(launched):
    full, _ = launched
    expected = _expected_syncs([6, 5, 5], 2)
    for r in full:
        assert [s["sync"] for s in r["steps"]] == expected
        # the prepared loader reports its end during exactly the epoch's last step ...
        assert [s["end_of_dataloader"] for s in r["steps"]] == \
            [i == n - 1 for n in (6, 5, 5) for i in range(n)]
        # ... and is finished after it (not left registered as in progress)
        assert [(e["in_dataloader"], e["accumulation_step"]) for e in r["epoch_ends"]] == \
            [(False, 0)] * 3
        steps_after = [i + 1 for i, sync in enumerate(expected) if sync]
        assert r["optimizer_steps"] == steps_after and len(steps_after) == 9
    assert full[0]["weights"] == full[1]["weights"]  # DDP kept the replicas identical


@pytest.mark.slow
def test_wrapping_before_prepare_is_refused(launched):
    full, _ = launched
    for r in full:
        assert r["prepare_passes_through"]  # what accelerate does with a SmartLoader
        msg = r["before_prepare_error"]
        assert msg and "not sharded across the 2 processes" in msg
        assert "accelerator.prepare(model, optimizer, loader)" in msg and "prepare_and_wrap" in msg
        level, twice = r["sharded_twice"]
        assert level == "warning" and "DistributedSampler" in twice and "1/2" in twice


@pytest.mark.slow
def test_resume_per_rank_equals_uninterrupted(launched):
    full, resumed = launched
    for f, r in zip(full, resumed):
        assert r["resumed_at"] == {"step": CUT, "epoch": 1, "accumulation_step": 2}
        assert [s["index"] for s in r["steps"]] == [s["index"] for s in f["steps"][CUT:]]
        assert [s["sync"] for s in r["steps"]] == [s["sync"] for s in f["steps"][CUT:]]
        assert r["optimizer_steps"] == [s for s in f["optimizer_steps"] if s > CUT]
        assert r["weights"] == f["weights"]  # bit for bit
        assert "already a SmartLoader" in r["rewrap_error"]
    assert full[0]["steps"] != full[1]["steps"]


@pytest.mark.slow
def test_resume_needs_a_seedable_sampler(launched):
    full, _ = launched
    problem = full[0]["resume_problem"]
    assert problem["True"] is None
    assert "use_seedable_sampler=True" in problem["False"]


@pytest.mark.slow
def test_one_process_syncs_at_epoch_end(tmp_path):
    """Without a launcher: 26 batches, so the last pool of epochs 1-2 is short (2 batches);
    the epoch's last step must still see the loader's end and sync."""
    run([sys.executable, str(WORKER), "--out", str(tmp_path), "--mode", "full",
         "--cut", "100"], tmp_path, TIMEOUT_S, "one process")
    r = json.loads((tmp_path / "full_rank0.json").read_text())
    assert r["world"] == 1
    per_epoch = [len(e) for e in _per_epoch(r["steps"]).values()]
    assert per_epoch == [10, 9, 9]  # 2 + 24/3; 26 -> 8 pools of 3 + one of 2
    assert [s["sync"] for s in r["steps"]] == _expected_syncs(per_epoch, 2)
    assert [e["accumulation_step"] for e in r["epoch_ends"]] == [0, 0, 0]
    assert len(r["optimizer_steps"]) == 5 + 5 + 5

"""Two torchrun "nodes" x 2 processes on localhost (c10d rendezvous, gloo), then a resumed launch.

Each node is its own ``torchrun --nnodes 2 --nproc-per-node 2 --rdzv-backend c10d`` process,
as on a cluster; the c10d rendezvous, not ``--node-rank``, decides which node is node 0 (it
sorts the nodes by address, then agent pid). ``_torchrun_worker.py`` trains a DDP model with
``selection_scope: global``; every rank writes what it saw, and this file compares.
"""
from __future__ import annotations

import json
import uuid

import pytest
import torch

from _dist_launch import ROOT, cli, finish, free_port, start
from smartloader.pipeline.distributed import global_percentiles

WORKER = ROOT / "tests" / "integrations" / "_torchrun_worker.py"
TIMEOUT_S = 150
CUT = 8  # saved after step 8: 2 steps into epoch 1
WORLD = 4


def _launch(tmp, mode: str) -> list[dict]:
    endpoint = f"127.0.0.1:{free_port()}"
    run_id = f"smartloader-{mode}-{uuid.uuid4().hex[:8]}"
    nodes = [start([cli("torchrun"), "--nnodes", "2", "--nproc-per-node", "2",
                    "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
                    "--max-restarts", "0", str(WORKER), "--out", str(tmp), "--mode", mode,
                    "--cut", str(CUT)], tmp, f"{mode}_node{i}")
             for i in range(2)]
    finish(nodes, TIMEOUT_S, f"torchrun 2 nodes x 2 ({mode})")
    return [json.loads((tmp / f"{mode}_rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun")
    return _launch(tmp, "full"), _launch(tmp, "resume")


@pytest.mark.slow
def test_four_ranks_on_two_nodes_take_equal_steps(launched):
    full, _ = launched
    envs = [r["env"] for r in full]
    assert [e["RANK"] for e in envs] == [0, 1, 2, 3]
    assert all(e["WORLD_SIZE"] == 4 and e["LOCAL_WORLD_SIZE"] == 2 for e in envs)
    # the rendezvous numbers the nodes; ranks are node-major
    assert [(e["GROUP_RANK"], e["LOCAL_RANK"]) for e in envs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    per_epoch = [[sum(s["epoch"] == e for s in r["steps"]) for e in range(3)] for r in full]
    # 12 batches per rank: warm-up 2 + pools 3,3,3,1 -> 6 steps; then 4 pools of 3 -> 4
    assert per_epoch == [[6, 4, 4]] * WORLD
    assert {r["total_steps"] for r in full} == {14}
    for e in range(3):  # the DistributedSampler's shards are disjoint on all 4 ranks
        seen = [{i for s in r["steps"] if s["epoch"] == e for i in s["index"]} for r in full]
        assert all(not a & b for k, a in enumerate(seen) for b in seen[k + 1:])
    assert len({tuple(r["params"]) for r in full}) == 1  # DDP replicas identical


@pytest.mark.slow
def test_global_selection_weights_are_percentiles_over_all_four_pools(launched):
    full, _ = launched
    records = [r["weights"] for r in full]
    # steps 2..13 select (pools of 3 batches; the lone last batch of epoch 0 passes through)
    assert [[w["step"] for w in rec] for rec in records] == [[2, 3, 4, 6, 7, 8, 9, 10, 11, 12,
                                                             13]] * WORLD
    for step_records in zip(*records):
        pools = [torch.tensor(w["losses"]) for w in step_records]
        assert all(len(p) == 12 for p in pools)
        for rank, w in enumerate(step_records):
            expected = w["beta"] * torch.log(global_percentiles(pools[rank], pools, rank=rank))
            torch.testing.assert_close(torch.tensor(w["log_weights"]), expected,
                                       rtol=0, atol=1e-6)
    # global percentiles differ from each rank's own: the scope is really global
    pools = [torch.tensor(w["losses"]) for w in (rec[0] for rec in records)]
    assert any(not torch.equal(global_percentiles(p, pools, rank=r),
                               global_percentiles(p, [p], rank=0))
               for r, p in enumerate(pools))
    assert all(r["comm_bytes"] == 11 * (4 * 8 + 4 * 12 * 4) + 4 * 8 for r in full)


@pytest.mark.slow
def test_resume_per_rank_equals_uninterrupted(launched):
    full, resumed = launched
    for f, r in zip(full, resumed):
        assert r["start"] == {"step": CUT, "epoch": 1}
        assert [s["index"] for s in r["steps"]] == [s["index"] for s in f["steps"][CUT:]]
        assert r["weights"] == [w for w in f["weights"] if w["step"] >= CUT]
        assert r["params"] == f["params"]
    assert len({tuple(map(tuple, (s["index"] for s in f["steps"]))) for f in full}) == WORLD

"""Real 2-rank gloo process groups on CPU (spawned), each bounded in time.

A hang fails the test (terminate after a timeout) instead of blocking CI. Scenarios run in
``_dist_workers.py``; each process group is started once per module and its results are
compared here.
"""
import os
import time

import pytest
import torch
import torch.multiprocessing as mp

import smartloader
from smartloader import ConfigError
from smartloader.pipeline.distributed import global_percentiles
from smartloader.selection.ranked import ranked_log_weights

import _dist_workers

TIMEOUT_S = 60


def run_ranks(name: str, tmp_path, world: int = 2) -> list:
    """Run ``_dist_workers.scenario_<name>`` on ``world`` spawned ranks; their results."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_dist_workers.entry, args=(r, name, str(tmp_path), world))
             for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + TIMEOUT_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(5)
    if hung:
        pytest.fail(f"scenario {name}: ranks {hung} still running after {TIMEOUT_S}s (hang)")
    out = []
    for r in range(world):
        path = os.path.join(tmp_path, f"{name}_{r}.pt")
        if not os.path.exists(path):
            pytest.fail(f"scenario {name}: rank {r} exited {procs[r].exitcode} with no result")
        res = torch.load(path, weights_only=False)
        if not res["ok"]:
            pytest.fail(f"scenario {name}: rank {r} failed:\n{res['error']}")
        out.append(res["result"])
    return out


@pytest.fixture(scope="module")
def main(tmp_path_factory):
    return run_ranks("main", tmp_path_factory.mktemp("main"))


@pytest.mark.slow
def test_equal_step_counts_with_uneven_shards(main):
    r0, r1 = main[0]["uneven_local"], main[1]["uneven_local"]
    # rank 0 has 10 batches of 4, rank 1 has 7: both read 7 -> pools 2,2,2,1 -> 4 steps.
    assert [len(e) for e in r0] == [len(e) for e in r1] == [4, 4, 4]
    assert main[0]["batch_limit"] == main[1]["batch_limit"] == 7
    assert main[0]["uneven_len"] == main[1]["uneven_len"] == 4
    # rank 0 never yields samples from its unread batches 7..9 (indices 28..39).
    assert max(i for e in r0 for b in e for i in b) < 28


@pytest.mark.slow
def test_local_selection_differs_across_ranks(main):
    a, b = main[0]["same_data_local"], main[1]["same_data_local"]
    assert len(a[0]) == len(b[0]) == 4
    assert a != b


@pytest.mark.slow
def test_global_selection_no_deadlock_at_epoch_ends(main):
    g0, g1 = main[0]["uneven_global"], main[1]["uneven_global"]
    # 6 batches each (rank 1: 23 samples, last batch 3), pool_factor 4 -> 2 steps per epoch;
    # the last pools hold 8 and 7 samples.
    assert [len(e) for e in g0] == [len(e) for e in g1] == [2, 2, 2]
    assert all(len(b) == 4 for e in g0 + g1 for b in e)
    assert all(40 <= i < 63 for e in g1 for b in e for i in b)
    assert main[0]["comm_bytes"] > 0 and main[0]["comm_time"] >= 0
    l0, l1 = main[0]["lone_last_global"], main[1]["lone_last_global"]
    assert [len(e) for e in l0] == [len(e) for e in l1] == [3, 3]  # pools 3, 3, 1 batches


@pytest.mark.slow
def test_global_percentiles_match_single_process(main):
    losses = [main[r]["losses"] for r in (0, 1)]
    cat = torch.cat(losses)
    expected = ranked_log_weights(cat, 1.0).exp()
    torch.testing.assert_close(main[0]["percentiles"], expected[:5])
    torch.testing.assert_close(main[1]["percentiles"], expected[5:])
    assert main[0]["nbytes"] == 2 * 8 + 2 * 5 * 4  # sizes + padded losses


def test_global_percentiles_pure_function():
    pools = [torch.tensor([0.5, 0.1, 0.9]), torch.tensor([0.3, 0.7]),
             torch.tensor([0.1, 0.2, 0.8, 0.0])]
    cat = torch.cat(pools)
    expected = ranked_log_weights(cat, 1.0).exp()  # ties (0.1) broken by (rank, position)
    start = 0
    for r, p in enumerate(pools):
        got = global_percentiles(p, pools, rank=r)
        torch.testing.assert_close(got, expected[start:start + len(p)])
        start += len(p)
    assert torch.equal(global_percentiles(pools[1], pools), expected[3:5])
    with pytest.raises(ValueError):
        global_percentiles(torch.tensor([9.0]), pools)


def test_selection_scope_config():
    assert smartloader.load_config({}).selection_scope == "local"
    assert "selection_scope" not in smartloader.load_config({}).to_dict()
    cfg = smartloader.load_config({"selection_scope": "global"})
    assert cfg.to_dict()["selection_scope"] == "global"
    with pytest.raises(ConfigError, match="selection_scope"):
        smartloader.load_config({"selection_scope": "world"})


@pytest.mark.slow
def test_resume_equals_uninterrupted_per_rank(main):
    res = [m["resume"] for m in main]
    for rank, r in enumerate(res):
        for scope in ("local", "global"):
            assert r[scope]["resumed"] == r[scope]["full"], (rank, scope)
            assert len(r[scope]["full"]) == 14
    assert res[0]["local"]["full"] != res[1]["local"]["full"]  # DistributedSampler shards


@pytest.mark.slow
def test_distributed_checkpoint_resumes_each_rank_exactly(tmp_path):
    res = run_ranks("checkpoint", tmp_path)
    for r in res:
        assert len(r["full"]) == 12
        assert r["resumed"] == r["full"]
    assert res[0]["full"] != res[1]["full"]
    assert res[0]["wrong_rank"].startswith("state.rank: this is rank 0, the state was saved "
                                           "by rank 1")
    assert res[1]["wrong_rank"].startswith("state.rank: this is rank 1, the state was saved "
                                           "by rank 0")


@pytest.mark.slow
def test_ddp_syncbatchnorm_scoring_runs_no_collectives(tmp_path):
    r0, r1 = run_ranks("syncbn", tmp_path)
    assert r0["scored"] == 3 and r1["scored"] == 0  # rank 0 scored alone, no hang
    assert r0["losses"].shape == (48,) and torch.isfinite(r0["losses"]).all()
    assert r0["training_flag_kept"]
    assert r0["steps"] == r1["steps"] == 4
    assert r0["unchanged"] and r1["unchanged"]


def test_yaml_in_docs_distributed_loads():
    import pathlib
    import re

    import yaml
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "distributed.md"
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    for block in blocks:
        smartloader.load_config(yaml.safe_load(block))


@pytest.mark.slow
def test_two_resolution_shards_by_rank_and_resumes_each_rank_exactly(tmp_path):
    """pool_source two_resolution under torch.distributed: each rank draws its shard of one
    permutation per epoch (padded like DistributedSampler), both yield the same number of
    batches, and with selection (local or global scope) and replay every rank resumes
    exactly."""
    res = run_ranks("two_resolution", tmp_path)
    assert res[0]["len"] == res[1]["len"] == 7
    for epoch in range(2):
        shards = [sum(r["uniform"][epoch], []) for r in res]
        assert [len(s) for s in shards] == [26, 26]
        both = sorted(shards[0] + shards[1])
        assert sorted(set(both)) == list(range(51))  # every sample, one padded twice
        assert len(both) - len(set(both)) == 1
    assert res[0]["uniform"][0] != res[0]["uniform"][1]  # a new permutation each epoch
    for scope in ("local", "global"):
        for r in res:
            run = r["resume"][scope]
            assert run["resumed"] == run["full"] and len(run["full"]) == 14
        phases = [p for _, p in res[0]["resume"][scope]["full"]]
        # replay steps are steps: the warm-up's 3 are a fresh one, its replay, a fresh one
        assert phases[:3] == ["warmup"] * 3 and set(phases[3:]) == {"select"}
    assert res[0]["resume"]["local"]["full"] != res[1]["resume"]["local"]["full"]

"""Code run inside the 2-rank gloo process groups of test_distributed.py (spawned processes).

Each ``scenario_*`` runs on every rank after ``init_process_group`` and returns a picklable
result, which :func:`entry` saves to ``<tmp>/<name>_<rank>.pt`` for the parent to compare.
"""
from __future__ import annotations

import datetime
import os
import traceback

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset

import smartloader
from smartloader.pipeline.distributed import gather_losses, global_percentiles
from smartloader.scoring.model import ModelHandle
from helpers import PlantedDataset, scorer_model
from resume_harness import assert_resumes, train_step

SELECT = [{"name": "select", "selection": "ranked", "beta": 1.0}]


#: the scenario's scratch folder (shared by the ranks), set by :func:`entry`
TMP = ""


def entry(rank: int, name: str, tmp: str, world: int = 2) -> None:
    global TMP
    TMP = tmp
    torch.set_num_threads(1)
    out = os.path.join(tmp, f"{name}_{rank}.pt")
    try:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/rdzv_{name}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=20))
        result = globals()[f"scenario_{name}"](rank)
        dist.barrier()
        dist.destroy_process_group()
        torch.save({"ok": True, "result": result}, out)
    except BaseException:  # report any failure to the parent, which fails the test
        torch.save({"ok": False, "error": traceback.format_exc()}, out)
        raise


def _shard(rank: int, sizes=(40, 28), bs: int = 4) -> DataLoader:
    """Uneven shards: rank 0 gets 10 batches, rank 1 gets 7."""
    ds = PlantedDataset(n=sum(sizes), hard_every=4)
    start = sum(sizes[:rank])
    return DataLoader(Subset(ds, range(start, start + sizes[rank])), batch_size=bs)


def _epochs(loader, n_epochs: int) -> list[list[list[int]]]:
    out = []
    for e in range(n_epochs):
        loader.set_epoch(e)
        out.append([batch[2].tolist() for batch in loader])
    return out


def scenario_main(rank: int) -> dict:
    res: dict = {}
    # 1. Uneven shards, local selection: equal step counts, every epoch.
    sl = smartloader.wrap(_shard(rank), scorer_model(), {"phases": SELECT, "pool_factor": 2})
    res["uneven_local"] = _epochs(sl, 3)
    res["uneven_len"] = len(sl)
    res["batch_limit"] = sl.distributed.batch_limit
    # 2. Same data on both ranks: local selection still differs (rank enters the seed).
    same = DataLoader(PlantedDataset(n=64, hard_every=4), batch_size=4)
    res["same_data_local"] = _epochs(smartloader.wrap(same, scorer_model(),
                                                      {"phases": SELECT, "pool_factor": 4}), 1)
    # 3. Global selection, uneven shards with a partial last batch on rank 1 (pools of
    #    different sizes at the epoch end), several epochs: must not deadlock.
    sl = smartloader.wrap(_shard(rank, sizes=(40, 23)), scorer_model(),
                          {"phases": SELECT, "pool_factor": 4, "selection_scope": "global"})
    res["uneven_global"] = _epochs(sl, 3)
    res["comm_bytes"] = sl.distributed.total_comm_bytes
    res["comm_time"] = sl.distributed.total_comm_time_s
    # 3b. Global, pool_factor 3 over 7 batches: the last pool is a lone batch on every rank
    #     (skip path), then selection continues next epoch.
    sl = smartloader.wrap(_shard(rank), scorer_model(),
                          {"phases": SELECT, "pool_factor": 3, "selection_scope": "global"})
    res["lone_last_global"] = _epochs(sl, 2)
    # 4. The pure function against gathered pools of different sizes.
    g = torch.Generator().manual_seed(100 + rank)
    losses = torch.rand(5 if rank == 0 else 3, generator=g)
    gathered, nbytes = gather_losses(losses)
    res["losses"] = losses
    res["percentiles"] = global_percentiles(losses, gathered, rank=rank)
    res["nbytes"] = nbytes
    res["resume"] = scenario_resume(rank)  # one process group for all: spawning is slow
    return res


def _build_ddp(rank: int, scope: str):
    torch.manual_seed(0)  # same init on both ranks; DDP broadcasts rank 0's anyway
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    ds = PlantedDataset(n=120, hard_every=5)
    sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=1)
    loader = DataLoader(ds, batch_size=6, sampler=sampler)
    cfg = {"seed": 3, "pool_factor": 3, "selection_scope": scope, "phases": [
        {"name": "warmup", "steps": 2, "selection": "uniform"},
        {"name": "select", "selection": "ranked", "beta": 1.0}]}
    return ddp, opt, smartloader.wrap(loader, ddp, cfg)


def scenario_resume(rank: int) -> dict:
    """The resume harness on every rank (the ranks run its steps in lockstep)."""
    total, cut = 14, 6  # 20 batches of 6 per rank per epoch -> 2 + ~3 steps/epoch: 3+ epochs
    out = {}
    for scope in ("local", "global"):
        def build():
            model, opt, loader = _build_ddp(rank, scope)
            return loader, model, opt
        run = assert_resumes(build, total, cut, train_step)
        out[scope] = {name: [batch[2].tolist() for batch, _ in records]
                      for name, records in (("full", run.full), ("resumed", run.resumed))}
    return out


def _syncbn_ddp() -> torch.nn.Module:
    """DDP over a CNN whose BatchNorm is a SyncBatchNorm.

    DDP refuses SyncBatchNorm in CPU modules at construction ("only work with GPU modules"),
    so on CPU the converted module is swapped in *after* wrapping; the scoring path (eval-mode
    SyncBatchNorm through ``ddp.module``) is the same one a GPU job takes.
    """
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with torch.no_grad():  # non-trivial running stats, so eval mode visibly uses them
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    ddp.module[1] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(ddp.module[1])
    return ddp


def scenario_syncbn(rank: int) -> dict:
    ddp = _syncbn_ddp()
    assert isinstance(ddp.module[1], torch.nn.SyncBatchNorm)
    before = {k: v.clone() for k, v in ddp.module.state_dict().items()}
    res: dict = {"scored": 0}
    ds = PlantedDataset(n=48, hard_every=4)
    x, y = ds.images, ds.labels
    if rank == 0:  # rank 1 does nothing: any collective here would hang rank 0
        handle = ModelHandle(ddp)
        for _ in range(3):
            res["losses"] = handle.losses(x, y)
            res["scored"] += 1
        res["training_flag_kept"] = ddp.training and ddp.module[1].training
    dist.barrier()
    # Both ranks through a selection epoch, scoring via the DDP + SyncBatchNorm model.
    sl = smartloader.wrap(DataLoader(ds, batch_size=4), ddp, {"phases": SELECT,
                                                              "pool_factor": 3})
    res["steps"] = sum(1 for _ in sl)
    after = ddp.module.state_dict()
    res["unchanged"] = all(torch.equal(before[k], after[k]) for k in before)
    return res


def scenario_checkpoint(rank: int) -> dict:
    """SmartLoader through torch.distributed.checkpoint (one key per rank), and a state
    loaded on the wrong rank."""
    import torch.distributed.checkpoint as dcp
    from smartloader import StateError
    total, cut = 12, 5
    out: dict = {}

    def run(steps, start=0, parts=None):
        ids = []
        loader, model, opt = parts
        stream = iter(loader)
        for i in range(start, steps):
            try:
                batch = next(stream)
            except StopIteration:
                loader.set_epoch(loader.epoch)
                stream = iter(loader)
                batch = next(stream)
            train_step(parts, i, batch)
            ids.append(batch[2].tolist())
        return ids, stream

    def build():
        model, opt, loader = _build_ddp(rank, "global")
        return loader, model, opt

    out["full"], _ = run(total, parts=build())
    first = build()
    ids, stream = run(cut, parts=first)
    dcp.save({"model": first[1].module.state_dict(), "optim": first[2].state_dict(),
              "loader": first[0].checkpoint}, checkpoint_id=os.path.join(TMP, "dcp"))
    torch.save(first[0].state_dict(), os.path.join(TMP, f"plain_{rank}.pt"))
    stream.close()
    second = build()
    target = {"model": second[1].module.state_dict(), "optim": second[2].state_dict(),
              "loader": second[0].checkpoint}
    dcp.load(target, checkpoint_id=os.path.join(TMP, "dcp"))
    second[1].module.load_state_dict(target["model"])
    second[2].load_state_dict(target["optim"])
    rest, _ = run(total, cut, parts=second)
    out["resumed"] = ids + rest
    dist.barrier()
    other = torch.load(os.path.join(TMP, f"plain_{1 - rank}.pt"), weights_only=True)
    try:
        build()[0].load_state_dict(other)
        out["wrong_rank"] = None
    except StateError as e:
        out["wrong_rank"] = str(e)
    return out


class _LowRes(PlantedDataset):
    """PlantedDataset with the ``low_res`` the two-resolution path needs (its 4x4 images
    are small already: the view is the sample)."""

    def low_res(self, i: int, size: int):
        return self[i]


def _two_res_loader(rank: int, scope: str, phases, replay=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    loader = DataLoader(_LowRes(n=51, hard_every=4), batch_size=4, shuffle=True)
    cfg = {"seed": 3, "pool_factor": 2, "selection_scope": scope, "phases": phases,
           "pool_source": {"type": "two_resolution", "size": 8, "workers": 1,
                           "timeout_s": 30.0}}
    if replay is not None:
        cfg["replay"] = replay
    return ddp, opt, smartloader.wrap(loader, ddp, cfg)


def scenario_two_resolution(rank: int) -> dict:
    """pool_source two_resolution on 2 ranks: 51 samples, so each rank draws 26 (one padded
    from the stream's start, as DistributedSampler pads), 7 batches of 4 per epoch."""
    uniform = [{"name": "uniform", "selection": "uniform"}]
    _, _, sl = _two_res_loader(rank, "local", uniform)
    out: dict = {"len": len(sl), "uniform": _epochs(sl, 2)}
    phases = [{"name": "warmup", "steps": 3, "selection": "uniform"},
              {"name": "select", "selection": "ranked", "beta": 1.0}]
    replay = {"capacity": 20, "mode": "steps", "k": 1,
              "priority": {"type": "epr", "alpha": 0.5}}
    out["resume"] = {}
    for scope in ("local", "global"):
        def build():
            model, opt, loader = _two_res_loader(rank, scope, phases, replay)
            return loader, model, opt
        run = assert_resumes(build, 14, 6, train_step)
        out["resume"][scope] = {
            name: [(batch[2].tolist(), phase) for batch, (phase, _) in records]
            for name, records in (("full", run.full), ("resumed", run.resumed))}
    return out

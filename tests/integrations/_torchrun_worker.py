"""Training script that test_torchrun_multinode.py runs on 2 torchrun "nodes" x 2 processes.

DDP over a linear model, gloo, a DistributedSampler (12 batches of 4 per rank per epoch),
``selection_scope: global``, pool_factor 3 after a 2-step uniform warm-up, 3 epochs. Every
rank writes ``<out>/<mode>_rank<RANK>.json``:

- the torchrun identity it was given (RANK, LOCAL_RANK, GROUP_RANK = node rank, WORLD_SIZE);
- the sample indices of every yielded batch;
- for every global-selection step, this rank's pool losses and the log-weights SmartLoader
  drew with (recorded by a pass-through around ``loader.distributed.log_weights``; the real
  all-gather runs), so the parent can recompute them from all 4 ranks' pools.

``--mode full`` saves this rank's loader, model and optimizer state after step ``--cut``;
``--mode resume`` (a new launch) loads the state of the rank it is given and trains to the end.
"""
import argparse
import datetime
import json
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import smartloader

PER_RANK_BATCHES, BATCH, EPOCHS = 12, 4, 3
CONFIG = {"seed": 3, "pool_factor": 3, "selection_scope": "global", "phases": [
    {"name": "warmup", "steps": 2, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0}]}

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--mode", choices=["full", "resume"], required=True)
p.add_argument("--cut", type=int, default=8)
args = p.parse_args()

torch.set_num_threads(1)
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
n = PER_RANK_BATCHES * BATCH * world
g = torch.Generator().manual_seed(0)
x = torch.randn(n, 8, generator=g)
data = TensorDataset(x, (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).long(),
                     torch.arange(n))
sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)

torch.manual_seed(0)
# One parameter tensor: DDP reorders a bucket's tensors after its first iteration, which
# changes gloo's summation order by an ulp, and a resumed process is in its first iteration.
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2, bias=False))
opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
loader = smartloader.wrap(DataLoader(data, batch_size=BATCH, sampler=sampler), model, CONFIG)

state_file = os.path.join(args.out, f"state_rank{rank}.pt")
if args.mode == "resume":
    saved = torch.load(state_file)
    model.module.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    loader.load_state_dict(saved["loader"])

weights = []
real_log_weights = loader.distributed.log_weights


def recording_log_weights(losses, beta):
    out = real_log_weights(losses, beta)
    weights.append({"step": loader.step, "losses": losses.tolist(), "log_weights": out.tolist(),
                    "beta": beta})
    return out


loader.distributed.log_weights = recording_log_weights

start = {"step": loader.step, "epoch": loader.epoch}
steps = []
for epoch in range(loader.epoch, EPOCHS):
    loader.set_epoch(epoch)
    for xb, yb, idx in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append({"step": loader.step - 1, "epoch": epoch, "index": idx.tolist()})
        if args.mode == "full" and loader.step == args.cut:
            torch.save({"loader": loader.state_dict(), "model": model.module.state_dict(),
                        "optimizer": opt.state_dict()}, state_file)

env = {k: int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE",
                                       "LOCAL_WORLD_SIZE")}
params = torch.cat([q.detach().flatten() for q in model.module.parameters()])
with open(os.path.join(args.out, f"{args.mode}_rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world": world, "env": env, "start": start, "steps": steps,
               "weights": weights, "params": params.tolist(), "total_steps": loader.step,
               "comm_bytes": loader.distributed.total_comm_bytes}, f)
dist.barrier()
dist.destroy_process_group()

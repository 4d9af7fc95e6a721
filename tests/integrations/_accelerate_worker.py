"""Training script that test_accelerate_launch.py runs under ``accelerate launch``.

A tiny linear model on 104 indexed samples (batches ``(x, y, index)`` of 4), 3 epochs,
``gradient_accumulation_steps=2``, pool_factor 3 after a 2-step uniform warm-up. Every rank
writes ``<out>/<mode>_rank<r>.json`` with what it saw, for the parent to compare:

- ``--mode full``: first checks that wrapping *before* ``prepare`` is refused, records each
  epoch's shard of the prepared loader, then trains 3 epochs with the plain order
  (``prepare`` then ``smartloader.wrap``), saving ``accelerator.save_state`` plus this rank's
  ``loader.state_dict()`` after step ``--cut``.
- both modes also record what :func:`resume_problem` and :func:`sharding_problem` say about
  loaders prepared with and without ``use_seedable_sampler`` and with a DistributedSampler.
- ``--mode resume``: a new process group loads that state (built with ``prepare_and_wrap``)
  and trains to the end.
Run without a launcher (one process) it does the ``full`` loop only.
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.data_loader import prepare_data_loader
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import smartloader
from smartloader.integrations.accelerate import prepare_and_wrap, resume_problem
from smartloader.pipeline.sharding import sharding_problem

N, BATCH, EPOCHS, ACCUMULATE = 104, 4, 3, 2
CONFIG = {"seed": 5, "pool_factor": 3, "phases": [
    {"name": "warmup", "steps": 2, "selection": "uniform"},
    {"name": "select", "selection": "ranked", "beta": 1.0}]}

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--mode", choices=["full", "resume"], required=True)
p.add_argument("--cut", type=int, default=8)
args = p.parse_args()

torch.set_num_threads(1)
accelerator = Accelerator(cpu=True, gradient_accumulation_steps=ACCUMULATE,
                          dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
set_seed(0)
rank = accelerator.process_index
g = torch.Generator().manual_seed(0)
x = torch.randn(N, 8, generator=g)
data = TensorDataset(x, (x[:, 0] > 0).long(), torch.arange(N))


def fresh():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def plain_loader():
    return DataLoader(data, batch_size=BATCH, shuffle=True)


out = {"rank": rank, "world": accelerator.num_processes}
# What the checks say about loaders prepared other ways (prepare_data_loader: not registered
# with the accelerator, so save_state is unaffected).
out["resume_problem"] = {
    str(seedable): resume_problem(prepare_data_loader(plain_loader(), use_seedable_sampler=seedable))
    for seedable in (False, True)}
if accelerator.num_processes > 1:
    twice = DataLoader(data, batch_size=BATCH, sampler=DistributedSampler(data, seed=0))
    out["sharded_twice"] = sharding_problem(prepare_data_loader(twice), accelerator.num_processes)
if args.mode == "full" and accelerator.num_processes > 1:
    # 1. Wrapped before prepare: prepare returns the SmartLoader unchanged; refused on
    #    every rank at the start of its first epoch.
    model, _ = fresh()
    early = smartloader.wrap(plain_loader(), model, CONFIG)
    out["prepare_passes_through"] = accelerator.prepare(early) is early
    try:
        next(iter(early))
        out["before_prepare_error"] = None
    except ValueError as e:
        out["before_prepare_error"] = str(e)

model, opt = fresh()
if args.mode == "full":
    model, opt, prepared = accelerator.prepare(model, opt, plain_loader())
    shards = []
    for epoch in range(EPOCHS):  # this rank's shard, epoch by epoch
        prepared.set_epoch(epoch)
        shards.append([i for _, _, idx in prepared for i in idx.tolist()])
    out["shards"] = shards
    loader = smartloader.wrap(prepared, model, CONFIG)  # the supported order
else:
    model, opt, loader = prepare_and_wrap(accelerator, model, opt, plain_loader(), CONFIG)
    try:
        prepare_and_wrap(accelerator, model, opt, loader, CONFIG)
        out["rewrap_error"] = None
    except TypeError as e:
        out["rewrap_error"] = str(e)
    accelerator.load_state(os.path.join(args.out, "ckpt"))
    loader.load_state_dict(torch.load(os.path.join(args.out, f"loader_rank{rank}.pt")))
    out["resumed_at"] = {"step": loader.step, "epoch": loader.epoch,
                         "accumulation_step": accelerator.step}

optimizer_steps = []  # the real optimizer's steps (AcceleratedOptimizer skips the others)
opt.optimizer.register_step_post_hook(lambda *_: optimizer_steps.append(loader.step))
steps, epoch_ends = [], []
for epoch in range(loader.epoch, EPOCHS):
    loader.set_epoch(epoch)
    for xb, yb, idx in loader:
        with accelerator.accumulate(model):
            loss = F.cross_entropy(model(xb), yb)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
        steps.append({"step": loader.step - 1, "epoch": epoch, "index": idx.tolist(),
                      "sync": accelerator.sync_gradients,
                      "end_of_dataloader": accelerator.gradient_state.end_of_dataloader})
        if args.mode == "full" and loader.step == args.cut:
            accelerator.save_state(os.path.join(args.out, "ckpt"))
            torch.save(loader.state_dict(), os.path.join(args.out, f"loader_rank{rank}.pt"))
    epoch_ends.append({"epoch": epoch, "len": len(loader),
                       "in_dataloader": accelerator.gradient_state.in_dataloader,
                       "accumulation_step": accelerator.step})

weights = torch.cat([p.detach().flatten() for p in accelerator.unwrap_model(model).parameters()])
out.update(steps=steps, epoch_ends=epoch_ends, optimizer_steps=optimizer_steps,
           weights=weights.tolist(), total_steps=loader.step)
with open(os.path.join(args.out, f"{args.mode}_rank{rank}.json"), "w") as f:
    json.dump(out, f)
accelerator.end_training()

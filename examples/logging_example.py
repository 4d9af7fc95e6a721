"""SmartLoader's numbers in TensorBoard (and W&B, MLflow) with a tqdm progress bar.

Hardware: any CPU. Runtime (measured): 26 s for the default 200 steps, 80% test accuracy,
on a 2-core x86 CPU shared with other jobs (load average 4.5), ``OMP_NUM_THREADS=1``, torch
2.13.0+cpu; with two torch threads on a busy machine it took several times longer. Trains the
demo's small CNN on the built-in synthetic gratings, logs every step's StepStats to
TensorBoard, shows a progress bar on stderr, then reads the event file back and prints what it
holds. ``--wandb`` adds a W&B run in offline mode, ``--mlflow DIR`` a local MLflow store.

    OMP_NUM_THREADS=1 python examples/logging_example.py  # then: tensorboard --logdir runs
    python examples/logging_example.py --steps 100 --wandb --mlflow mlruns
"""
import argparse
import contextlib
import os

import torch
import torch.nn.functional as F

import smartloader
from smartloader.integrations.logging import (MetricsCallback, ProgressCallback,
                                              TensorBoardCallback)
from smartloader.tools.datasets import ShuffledBatches, synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--steps", type=int, default=200)
p.add_argument("--logdir", default="runs/logging_example", help="TensorBoard directory")
p.add_argument("--wandb", action="store_true", help="also log to W&B (offline mode)")
p.add_argument("--mlflow", metavar="DIR", help="also log to a local MLflow file store in DIR")
args = p.parse_args()

train_x, train_y, test_x, test_y = synthetic_images(n_train=2000, n_test=500)
torch.manual_seed(0)
model = SmallCNN(in_channels=1, classes=10)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

tb = TensorBoardCallback(args.logdir)                  # a SummaryWriter on that directory
callbacks = [tb]
with contextlib.ExitStack() as finish:
    if args.wandb:
        import wandb
        run = wandb.init(project="smartloader-example", mode="offline")
        finish.callback(run.finish)
        callbacks.append(MetricsCallback(wandb.log, text=True))   # strings too: W&B takes them
    if args.mlflow:
        import mlflow
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: local files
        mlflow.set_tracking_uri(f"file://{os.path.abspath(args.mlflow)}")
        finish.enter_context(mlflow.start_run())
        callbacks.append(MetricsCallback(mlflow.log_metrics, every=10))  # a file write each
    callbacks.append(ProgressCallback(total=args.steps, desc="train"))

    loader = smartloader.wrap(ShuffledBatches(train_x, train_y, 64, seed=0), model,
                              total_steps=args.steps, score_resolution=16,
                              callback=callbacks)                 # <- the line
    step, epoch = 0, 0
    while step < args.steps:
        loader.set_epoch(epoch)
        for images, labels, _ in loader:
            loss = F.cross_entropy(model(images), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1
tb.close()  # flushes the event file

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

events = EventAccumulator(args.logdir)
events.Reload()
tags = events.Tags()["scalars"]
loss = events.Scalars("smartloader/selected_loss_mean")
print(f"{args.logdir}: {len(tags)} scalar tags; smartloader/selected_loss_mean at "
      f"{len(loss)} steps ({loss[0].step}..{loss[-1].step}), last {loss[-1].value:.3f}")
print(f"test accuracy after {args.steps} steps: {100 * evaluate(model, test_x, test_y):.2f}%")

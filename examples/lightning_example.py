"""smartloader with PyTorch Lightning: add ``SmartLoaderCallback`` to the Trainer.

Hardware: CPU (2 cores, shared with other jobs). Tested with lightning 2.6.6, torch 2.13.0+cpu
on smartloader's synthetic gratings: `--steps 100` took 129 s wall (the 2 cores were busy
with other work; most of it is imports, start-up and the CNN's CPU steps), 83.10% test
accuracy, 84 scoring forwards. One run, one seed: it shows the integration working, not a
speed-up (docs/results.md has those). The `--devices 2` line was not timed here; the same DDP
path runs in tests/integrations/test_lightning_integration.py.

    python examples/lightning_example.py [--steps 300]
    python examples/lightning_example.py --steps 100 --devices 2   # DDP, two CPU processes

What changed against a plain Lightning script: the callback in ``Trainer(callbacks=[...])``
and ``training_step`` also returning the per-sample losses (only the ``history`` scorer needs
them; the default scorer ignores them). ``train_dataloader`` returns its DataLoader as before:
under DDP Lightning injects its DistributedSampler first, and the callback wraps the result.
"""
import argparse

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from smartloader.integrations.lightning import SmartLoaderCallback
from smartloader.tools.datasets import synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate


class LitCNN(L.LightningModule):
    def __init__(self, data):
        super().__init__()
        self.net = SmallCNN(in_channels=1, classes=10)
        self.train_x, self.train_y = data

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        losses = F.cross_entropy(self(x), y, reduction="none")
        self.log("loss", losses.mean(), prog_bar=True)
        return {"loss": losses.mean(), "losses": losses}   # per-sample: for report_losses

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self):                            # unchanged
        ds = TensorDataset(self.train_x, self.train_y)
        return DataLoader(ds, batch_size=64, shuffle=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--devices", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(0)
    tx, ty, vx, vy = synthetic_images(n_train=4000, n_test=1000)
    lit = LitCNN((tx, ty))
    smart = SmartLoaderCallback(score_resolution=16)    # <- the added line; total_steps
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=args.devices,
                        strategy="ddp" if args.devices > 1 else "auto", callbacks=[smart],
                        logger=False, enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(lit)                                     # ... comes from max_steps
    if trainer.is_global_zero:
        print(smart.loader.stats)
        print(f"test accuracy after {args.steps} steps: {100 * evaluate(lit.net, vx, vy):.2f}%")

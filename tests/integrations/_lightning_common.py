"""A tiny Lightning setup shared by the Lightning integration test and its DDP script.

``IndexedVectors`` yields ``(x, y, index)``; ``Classifier`` records the sample ids (and
Lightning's epoch) of every batch ``training_step`` trains on, and returns the per-sample
losses under ``"losses"``.
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class IndexedVectors(Dataset):
    """``n`` samples of 8 features and 4 classes; item ``i`` is ``(x_i, y_i, i)``."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, :4].argmax(1) + (torch.rand(n, generator=g) < 0.3).long()) % 4

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


class Classifier(L.LightningModule):
    """A linear classifier; ``report="loss"`` returns the true per-sample losses,
    ``report="index"`` returns ``index + 1`` as each sample's "loss" (so where a reported
    value lands shows which sample it was matched to), ``report=None`` returns the loss only.
    """

    def __init__(self, loader_fn, report: str | None = "loss", lr: float = 0.2):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(8, 4)
        self.loader_fn = loader_fn
        self.report = report
        self.lr = lr
        self.seen: list[list[int]] = []      # sample ids of every trained batch
        self.epochs: list[int] = []          # Lightning's epoch of every trained batch
        self.validated: list[int] = []       # Lightning's epoch at every validation run

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        per_sample = F.cross_entropy(self(x), y, reduction="none")
        self.seen.append(idx.tolist())
        self.epochs.append(self.current_epoch)
        if self.report is None:
            return per_sample.mean()
        reported = per_sample if self.report == "loss" else idx.float() + 1
        return {"loss": per_sample.mean(), "losses": reported}

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        return F.cross_entropy(self(x), y)

    def on_validation_epoch_end(self):
        self.validated.append(self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)

    def train_dataloader(self):
        return self.loader_fn()


def trainer(tmp, **kwargs) -> L.Trainer:
    """A quiet CPU Trainer (no logger, no progress bar, no summary, no sanity check)."""
    base = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                enable_model_summary=False, enable_checkpointing=False,
                num_sanity_val_steps=0, default_root_dir=str(tmp))
    base.update(kwargs)
    return L.Trainer(**base)


def plain_loader(n: int = 64, batch_size: int = 4, shuffle: bool = True) -> DataLoader:
    return DataLoader(IndexedVectors(n), batch_size=batch_size, shuffle=shuffle)

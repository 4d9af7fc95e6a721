"""Small synthetic data shared by the tests: planted hard samples, a fixed scorer model."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class PlantedDataset(Dataset):
    """N samples of shape (1, 4, 4); every ``hard_every``-th one is *hard*.

    With :func:`scorer_model`, an easy sample's input makes class 0 likely (low loss) and a
    hard one makes class 1 likely while its label is 0 (high loss). Items are
    ``(image, label, index, is_hard, name)`` so subsetting consistency can be checked.
    """

    def __init__(self, n: int = 256, hard_every: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.n = n
        self.hard = torch.tensor([i % hard_every == 3 for i in range(n)])
        base = torch.rand(n, 1, 4, 4, generator=g) * 0.1
        sign = torch.where(self.hard, -1.0, 1.0).view(n, 1, 1, 1)
        self.images = base + sign * (0.5 + torch.rand(n, 1, 1, 1, generator=g))
        self.labels = torch.zeros(n, dtype=torch.int64)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i], i, bool(self.hard[i]), f"img{i:04d}.png"


class DictDataset(PlantedDataset):
    def __getitem__(self, i: int):
        img, label, idx, hard, name = super().__getitem__(i)
        return {"image": img, "label": label, "meta": {"index": idx, "hard": hard, "name": name}}


def scorer_model(seed: int = 0, bn: bool = False, dropout: bool = False) -> torch.nn.Module:
    """Logit of class 0 = 4 x mean(input), class 1 = -4 x mean(input): planted samples
    (negative mean) get a high cross-entropy for label 0."""
    layers: list[torch.nn.Module] = []
    if bn:
        layers.append(torch.nn.BatchNorm2d(1, affine=False))
    layers += [torch.nn.Flatten(), torch.nn.Linear(16, 2)]
    if dropout:
        layers.append(torch.nn.Dropout(0.5))
    model = torch.nn.Sequential(*layers)
    lin = model[-2] if dropout else model[-1]
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0].fill_(4 / 16)
        lin.weight[1].fill_(-4 / 16)
        lin.bias.zero_()
    return model


def trainable_model(*prefix: torch.nn.Module, seed: int = 0):
    """A Linear(16, 2) classifier (after optional ``prefix`` layers) with weights drawn from
    its own generator, and an SGD optimizer: identical every time it is built."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(*prefix, torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, torch.optim.SGD(model.parameters(), lr=0.5)


def epoch_loader(n: int = 150, workers: int = 0):
    """A DataLoader over PlantedDataset whose order is a function of (seed, epoch)."""
    from torch.utils.data import DataLoader, DistributedSampler
    ds = PlantedDataset(n=n, hard_every=5)
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=1)
    return DataLoader(ds, batch_size=10, sampler=sampler, num_workers=workers)

"""Two-resolution selection on a map-style dataset: score small views, load only the chosen.

A dataset with ``low_res(index, size)`` (here: procedurally generated images, so the file
runs as it is, on the CPU, in a few seconds) is wrapped with
``pool_source: {type: two_resolution}``: SmartLoader draws the indices, scores each pool on
16-px views loaded in two worker processes (kept in memory after the first epoch:
``cache: true``), and loads only the chosen samples at 64 px. A quarter of every batch is
replayed from a memory that stores dataset indices, not images (``replay:``): replayed
samples are loaded again at full resolution.

    python examples/two_resolution_example.py
"""
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import smartloader


class Shapes(Dataset):
    """``(image [3, 64, 64], label, index)``; the image is a function of the index."""

    def __init__(self, n: int = 512, classes: int = 4):
        self.n, self.classes = n, classes

    def __len__(self):
        return self.n

    def _image(self, i: int, size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        label = i % self.classes
        x = torch.linspace(-1, 1, size)
        pattern = torch.sin((label + 1) * 3.0 * x)[None, :] * torch.ones(size, 1)
        return (pattern + 0.3 * torch.randn(size, size, generator=g)).expand(3, -1, -1)

    def __getitem__(self, i: int):            # full resolution: what the model trains on
        return self._image(i, 64), i % self.classes, i

    def low_res(self, i: int, size: int):     # the small view the pool is scored on
        return self._image(i, size), i % self.classes, i


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(Shapes(), batch_size=32, shuffle=True)
    config = {"pool_source": {"type": "two_resolution", "size": 16, "workers": 2,
                              "cache": True},
              "replay": {"capacity": 0.25, "mode": "mix", "fraction": 0.25}}
    epochs = 3
    loader = smartloader.wrap(loader, model, config, total_epochs=epochs)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for images, labels, _ in loader:
            losses = F.cross_entropy(model(images), labels, reduction="none")
            weights = loader.replay_weights   # 1 for fresh samples, mean 1 over replayed
            opt.zero_grad()
            (losses * weights).mean().backward()
            opt.step()
            loader.report_losses(losses.detach())
        s = loader.stats
        print(f"epoch {epoch}: {s.phase:8s} pool {s.pool_size:3d} -> {s.batch_size} "
              f"({s.replayed} replayed), images {tuple(images.shape[1:])}, "
              f"loss {float(losses.mean()):.3f}")
    memory = loader.replay_memory
    print(f"replay memory: {len(memory)} samples in {memory.nbytes} bytes (indices and "
          f"seeds: {memory.bytes_per_sample} bytes a sample)")


if __name__ == "__main__":
    main()

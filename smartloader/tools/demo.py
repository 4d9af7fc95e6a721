"""``python -m smartloader demo``: uniform vs SmartLoader on the same model, side by side.

Trains a small CNN twice with the same schedule and the same number of steps — once on the
wrapped loader's uniform batches, once through :func:`smartloader.wrap` — and prints steps,
wall time, SmartLoader's overhead and test accuracy. Built-in procedurally generated images
by default (no download); ``--data DIR`` takes MNIST/Fashion-MNIST IDX or CIFAR-10 binary.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from smartloader import load_config, wrap
from smartloader.config.phases import DEFAULT_PHASES, describe_phases
from smartloader.tools.datasets import ShuffledBatches, load_image_dir, synthetic_images
from smartloader.tools.progress_bar import ProgressBar


class SmallCNN(torch.nn.Module):
    """conv-bn-relu x3 with pooling, global average pool, linear. Takes uint8 NCHW."""

    def __init__(self, in_channels: int, classes: int, width: int = 16):
        super().__init__()
        c = width

        def block(i, o):
            return torch.nn.Sequential(torch.nn.Conv2d(i, o, 3, padding=1, bias=False),
                                       torch.nn.BatchNorm2d(o), torch.nn.ReLU())
        self.body = torch.nn.Sequential(block(in_channels, c), torch.nn.MaxPool2d(2),
                                        block(c, 2 * c), torch.nn.MaxPool2d(2),
                                        block(2 * c, 2 * c))
        self.head = torch.nn.Linear(2 * c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 127.5 - 1.0
        return self.head(self.body(x).mean((2, 3)))


@dataclass
class RunResult:
    name: str
    steps: int
    wall_s: float
    overhead_s: float
    accuracy: float


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += int((model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum())
    model.train()
    return correct / len(x)


def train(name: str, data, steps: int, batch_size: int, seed: int, lr: float,
          select: bool, score_resolution: int | None, quiet: bool = False) -> RunResult:
    train_x, train_y, test_x, test_y = data
    with torch.random.fork_rng():  # seeded init without leaving the caller's RNG changed
        torch.manual_seed(seed)
        model = SmallCNN(train_x.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    loader = ShuffledBatches(train_x, train_y, batch_size, seed=seed)
    overhead = [0.0]
    if select:
        loader = wrap(loader, model, total_steps=steps, seed=seed,
                      score_resolution=score_resolution,
                      callback=lambda s: overhead.__setitem__(0, overhead[0] + s.overhead_s))
    bar = ProgressBar(steps, name, enabled=not quiet)
    step, epoch = 0, 0
    start = time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            bar.update(step, f"loss {loss.item():.3f}")
            if step == steps:
                break
        epoch += 1
    wall = time.perf_counter() - start
    bar.close()
    return RunResult(name, steps, wall, overhead[0], evaluate(model, test_x, test_y))


def format_table(results: list[RunResult]) -> str:
    rows = [("run", "steps", "wall time", "smartloader overhead", "test accuracy")]
    for r in results:
        over = "-" if r.overhead_s == 0 else f"{r.overhead_s:.1f} s ({100 * r.overhead_s / r.wall_s:.1f}%)"
        rows.append((r.name, str(r.steps), f"{r.wall_s:.1f} s", over, f"{100 * r.accuracy:.2f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe_run(steps: int, score_resolution: int | None) -> str:
    """What the SmartLoader run of the demo does, read from its (default) config."""
    cfg = load_config(total_steps=steps)
    return (f"smartloader: pool_factor {cfg.pool_factor}, phases "
            f"{describe_phases(DEFAULT_PHASES)}, scoring at {score_resolution or 'full'} px; "
            f"equal steps, so it saw {cfg.pool_factor}x the samples per selection step and "
            f"scored each pool with one low-resolution forward.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="smartloader demo", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="directory with MNIST/Fashion-MNIST IDX or CIFAR-10 .bin "
                                   "files (default: built-in synthetic images)")
    p.add_argument("--steps", type=int, default=1200, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--score-resolution", type=int, default=16,
                   help="shorter side (px) of the scoring pass; 0 = full resolution")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data:
        data = load_image_dir(args.data)
        source = args.data
    else:
        data = synthetic_images(seed=args.seed)
        source = "built-in synthetic gratings (8000 train / 2000 test, 32x32)"
    print(f"data: {source}; {len(data[0])} train images {tuple(data[0].shape[1:])}, "
          f"{len(data[2])} test", flush=True)
    res = args.score_resolution or None
    results = [
        train("uniform", data, args.steps, args.batch_size, args.seed, args.lr, False, None,
              args.quiet),
        train("smartloader", data, args.steps, args.batch_size, args.seed, args.lr, True, res,
              args.quiet),
    ]
    print()
    print(format_table(results))
    print("\n" + describe_run(args.steps, res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

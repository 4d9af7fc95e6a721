"""Per-step cost of SmartLoader's own machinery vs the plain loop and the scoring floor.

For each pool size P (batch b = P / pool_factor) it measures, with medians over many steps:

  (a) plain     one training step of the model on a batch of b (forward + backward + SGD)
  (c) floor     (a) + the scoring forward of a pool of P, timed on its own
  (b) wrapped   the loop through SmartLoader in its selection phase (pool, score, select, step)

and reports SmartLoader's own cost (b - c) / a and the scoring cost (c - a) / a, plus the
machinery time per step in ms (pooling + ranking + drawing + subsetting = (b - c)).

    python benchmarks/overhead.py                 # CPU, pool sizes 256..4096
    python benchmarks/overhead.py --pools 512 --steps 200
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import smartloader
from smartloader.tools.demo import SmallCNN
from smartloader.scoring.model import ModelHandle


class Batches:
    """Pre-built in-memory batches (no loading cost), re-iterable per epoch."""

    def __init__(self, x, y, b):
        self.x, self.y, self.batch_size = x, y, b
        self.idx = torch.arange(len(x))

    def __len__(self):
        return len(self.x) // self.batch_size

    def __iter__(self):
        b = self.batch_size
        for i in range(len(self)):
            yield self.x[i * b:(i + 1) * b], self.y[i * b:(i + 1) * b], self.idx[i * b:(i + 1) * b]


def train_step(model, opt, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def measure(pool, pool_factor, steps, size, res, device):
    b = pool // pool_factor
    g = torch.Generator().manual_seed(0)
    n = pool * (steps + 4)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    model = SmallCNN(3, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb, yb = x[:b], y[:b]
    for _ in range(3):
        train_step(model, opt, xb, yb)
    plain = median_ms(lambda: train_step(model, opt, xb, yb), steps)
    handle = ModelHandle(model, resolution=res)
    score = median_ms(lambda: handle.losses(x[:pool], y[:pool]), steps)
    loader = smartloader.wrap(Batches(x, y, b), model, pool_factor=pool_factor,
                              score_resolution=res,
                              phases=[{"name": "select", "selection": "ranked"}])
    per_step, machinery = [], []
    it = iter(loader)
    for i in range(steps + 3):
        t = time.perf_counter()
        xs, ys, _ = next(it)
        train_step(model, opt, xs, ys)
        dt = time.perf_counter() - t
        if i >= 3:
            per_step.append(dt)
            s = loader.stats
            machinery.append(s.pool_time_s + s.select_time_s)
    wrapped = 1000 * statistics.median(per_step)
    floor = plain + score
    return {"pool": pool, "batch": b, "plain_ms": plain, "score_ms": score, "floor_ms": floor,
            "wrapped_ms": wrapped, "own_cost": (wrapped - floor) / plain,
            "scoring_cost": score / plain,
            "machinery_ms_from_stats": 1000 * statistics.median(machinery)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pools", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--size", type=int, default=32, help="image side, px")
    p.add_argument("--score-resolution", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0 = leave as is); 1 avoids oversubscribing a shared CPU")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"device {args.device}, {torch.get_num_threads()} threads, SmallCNN on "
          f"{args.size}px uint8, scoring at {args.score_resolution}px, pool_factor "
          f"{args.pool_factor}; medians over {args.steps} steps")
    print(f"{'pool':>5} {'batch':>5} {'plain':>9} {'score':>9} {'wrapped':>9} "
          f"{'own (b-c)/a':>12} {'scoring (c-a)/a':>16} {'machinery':>10}")
    for pool in args.pools:
        r = measure(pool, args.pool_factor, args.steps, args.size, args.score_resolution,
                    torch.device(args.device))
        rows.append(r)
        print(f"{r['pool']:>5} {r['batch']:>5} {r['plain_ms']:>7.1f}ms {r['score_ms']:>7.1f}ms "
              f"{r['wrapped_ms']:>7.1f}ms {100 * r['own_cost']:>11.1f}% "
              f"{100 * r['scoring_cost']:>15.1f}% {r['machinery_ms_from_stats']:>8.2f}ms",
              flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()

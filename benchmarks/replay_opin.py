"""One Pass Fashion-MNIST: OPIN's replay-memory table, on a laptop-sized problem.

One pass over a shuffled Fashion-MNIST stream with a small CNN on CPU. Compared:
no replay (naive one pass); a ReplayMemory of 1% / 5% / 10% of the data with k = 1, 3, 5
replay steps after each fresh step (k + 1 effective epochs of compute); and ordinary
multi-epoch training on all the data for the same compute (the 100%-storage column). Same
model, optimiser, batch size, batched augmentation and linearly decaying learning rate
everywhere; only where the samples come from differs. The memory is used directly in a plain
loop (reservoir insertion, EPR priority with alpha 1 -> 0, importance-weighted replay loss).

    OMP_NUM_THREADS=1 python benchmarks/replay_opin.py --data DIR --quick  # ~1-2 min, 2,000 images
    OMP_NUM_THREADS=1 python benchmarks/replay_opin.py --data DIR          # full 60,000-sample stream
    OMP_NUM_THREADS=1 python benchmarks/replay_opin.py --data DIR --quick --wrap  # replay through
                                  # smartloader.wrap with a replay: section (the product path)

Writes ``<out>/replay_opin[_quick].json`` (every run) and ``.md`` (OPIN-shaped table, mean ±
std of test accuracy over seeds).

Hardware and results. Only ``--quick`` has been run: 1 thread on a shared 2-core CPU box
(torch 2.13 CPU), 88 s wall. Test accuracy (%), 1,000 test images, mean ± std over 2 seeds:

    | effective epochs | 1% memory  | 5% memory  | 10% memory | multi-epoch, 100% |
    | 1 (no replay)    | —          | —          | —          | 73.3 ± 0.6        |
    | 2                | 70.4 ± 1.1 | 76.5 ± 0.7 | 76.6 ± 1.5 | 77.9 ± 2.4        |
    | 4                | 70.7 ± 0.5 | 77.2 ± 0.1 | 80.4 ± 0.1 | 80.9 ± 0.4        |

(1% of a 2,000-image stream is 20 images, fewer than a batch: replay then overfits them.)
The full grid (60,000-image stream, k up to 5, 3 seeds, ~70k SGD steps) has not been run.
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Benchmark the smartloader of this checkout, not whichever copy is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from smartloader.common.progress import Progress
from smartloader.replay import AlphaSchedule, ReplayMemory, ReplayScheduler

# Hyperparameters (units in comments).
HP = {
    "batch_size": 128,      # samples per SGD step, fresh or replay
    "lr": 0.02,             # peak SGD learning rate, decayed linearly to 0 over the run's steps
                            # (0.05 diverged in several EPR runs: early importance weights reach ~15)
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "shift": 2,             # max random translation, pixels (zero padding)
    "memories": [0.01, 0.05, 0.10],   # replay capacity, fraction of the stream
    "ks": [1, 3, 5],        # replay steps per fresh step -> k + 1 effective epochs
    "priority": "epr",      # epr (alpha 1 -> 0 linear) | uniform
}


def idx(path: Path) -> np.ndarray:
    """Read a gzip IDX file (big-endian header, uint8 payload)."""
    d = gzip.open(path, "rb").read()
    ndim = d[3]
    dims = np.frombuffer(d, ">u4", count=ndim, offset=4)
    return np.frombuffer(d, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(root: Path, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if split == "train" else "t10k"
    x = torch.from_numpy(idx(root / f"{prefix}-images-idx3-ubyte.gz").copy())[:limit]
    y = torch.from_numpy(idx(root / f"{prefix}-labels-idx1-ubyte.gz").copy()).long()[:limit]
    return x.unsqueeze(1), y                               # uint8 [N,1,28,28], int64 [N]


def augment(x: torch.Tensor, generator: torch.Generator, shift: int) -> torch.Tensor:
    """uint8 [B,1,H,W] -> float [B,1,H,W]: random flip and translation, then normalise."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (shift, shift, shift, shift))
    dy, dx = (torch.randint(0, 2 * shift + 1, (2, b), generator=generator))
    rows = (torch.arange(h) + dy[:, None])[:, :, None]
    cols = (torch.arange(w) + dx[:, None])[:, None, :]
    x = padded[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    return (x.float() / 255.0 - 0.286) / 0.353


def make_model() -> nn.Module:
    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(1, 16), block(16, 32), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(int((model((xb.float() / 255.0 - 0.286) / 0.353).argmax(1) == yb).sum())
                  for xb, yb in zip(x.split(1000), y.split(1000)))
    model.train()
    return correct / len(y)


class Stream:
    """The one-pass stream as a re-iterable loader of ``(x_uint8, y, index)`` batches."""

    def __init__(self, x, y, batches, batch_size):
        self.x, self.y, self.batches, self.batch_size = x, y, batches, batch_size
        self.dataset = y  # len(loader.dataset): what a fractional replay capacity reads

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return ((self.x[i], self.y[i], i) for i in self.batches)


def train_wrapped(data, test, seed: int, *, memory_fraction: float, k: int) -> dict:
    """One replay run through the product path: ``smartloader.wrap`` with a ``replay:``
    section (same model, optimiser, stream, augmentation and loss as :func:`train`)."""
    import smartloader
    x, y = data
    n, bs = len(y), HP["batch_size"]
    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=HP["lr"], momentum=HP["momentum"],
                          nesterov=True, weight_decay=HP["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    stream = Stream(x, y, list(torch.randperm(n, generator=gen).split(bs)), bs)
    total = ReplayScheduler(bs, mode="steps", k=k).steps_for(n)
    priority = ({"type": "epr", "alpha": {"start": 1.0, "end": 0.0}}
                if HP["priority"] == "epr" else {"type": "uniform"})
    cfg = {"seed": seed, "total_steps": total, "index_key": 2,
           "phases": [{"name": "one_pass", "selection": "uniform"}],
           "replay": {"capacity": memory_fraction, "k": k, "priority": priority,
                      "reaugment": False}}   # the loop augments every batch, as in train()
    loader = smartloader.wrap(stream, model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
    start = time.perf_counter()
    steps = 0
    for xb, yb, _ in loader:
        losses = F.cross_entropy(model(augment(xb, gen, HP["shift"])), yb, reduction="none")
        loss = (losses * loader.replay_weights).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loader.report_losses(losses.detach())
        steps += 1
    return {"seed": seed, "memory": memory_fraction, "k": k, "epochs": 1, "steps": steps,
            "effective_epochs": k + 1, "memory_nbytes": loader.replay_memory.nbytes,
            "path": "wrap", "test_acc": accuracy(model, *test),
            "train_s": time.perf_counter() - start}


def train(data, test, seed: int, *, memory_fraction: float | None, k: int, epochs: int) -> dict:
    """One run. memory_fraction None: plain training for ``epochs`` passes (no replay)."""
    x, y = data
    n, bs = len(y), HP["batch_size"]
    torch.manual_seed(seed)                      # model init only (script, not library code)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=HP["lr"], momentum=HP["momentum"],
                          nesterov=True, weight_decay=HP["weight_decay"])
    gen = torch.Generator().manual_seed(seed)    # stream order and augmentation
    fresh_batches = [perm.split(bs) for perm in
                     (torch.randperm(n, generator=gen) for _ in range(epochs))]
    fresh_batches = [b for epoch in fresh_batches for b in epoch]
    memory = scheduler = None
    if memory_fraction is None:
        total = len(fresh_batches)
    else:
        memory = ReplayMemory(max(1, round(memory_fraction * n)), policy="reservoir",
                              priority=HP["priority"], alpha=AlphaSchedule(1.0, 0.0, "linear"),
                              seed=seed)
        scheduler = ReplayScheduler(bs, mode="steps", k=k)
        total = scheduler.steps_for(n)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
    stream = iter(fresh_batches)
    start = time.perf_counter()
    for step in range(total):
        plan = scheduler.plan(step, len(memory)) if scheduler else None
        if plan is None or plan.fresh:
            index = next(stream)
            xb, yb, w, slots = x[index], y[index], None, None
        else:
            fields, slots, w = memory.sample(plan.n_replay, Progress(step, total_steps=total))
            xb, yb, index = fields["input"], fields["target"], fields["index"]
        losses = F.cross_entropy(model(augment(xb, gen, HP["shift"])), yb, reduction="none")
        loss = (losses * w).mean() if w is not None else losses.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if memory is not None:
            if slots is None:
                memory.add({"input": xb, "target": yb, "index": index}, losses.detach())
            else:
                memory.update_losses(slots, losses.detach())
    return {"seed": seed, "memory": memory_fraction, "k": k, "epochs": epochs, "steps": total,
            "effective_epochs": (k + 1) if memory is not None else epochs,
            "memory_nbytes": memory.nbytes if memory is not None else None,
            "test_acc": accuracy(model, *test), "train_s": time.perf_counter() - start}


def table(runs: list[dict], memories: list[float], ks: list[int], ref_epochs: list[int]) -> str:
    def cell(rows):
        accs = [100 * r["test_acc"] for r in rows]
        if not accs:
            return "—"
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        return f"{statistics.mean(accs):.1f} ± {sd:.1f}"

    head = "| effective epochs | " + " | ".join(f"{m:.0%} memory" for m in memories)
    lines = [head + " | multi-epoch, 100% |", "|---" * (len(memories) + 2) + "|"]
    naive = [r for r in runs if r["memory"] is None and r["epochs"] == 1]
    lines.append("| 1 (one pass, no replay) | " + " | ".join("—" for _ in memories)
                 + f" | {cell(naive)} |")
    for e in sorted((set(ref_epochs) | {k + 1 for k in ks}) - {1}):
        replay = [cell([r for r in runs if r["memory"] == m and r["k"] + 1 == e]) for m in memories]
        ref = cell([r for r in runs if r["memory"] is None and r["epochs"] == e])
        lines.append(f"| {e} | " + " | ".join(replay) + f" | {ref} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2,000-image stream, 1,000 test images, batch 64, k in {1, 3}, "
                             "2 seeds (a minute or two on one core)")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (--quick: 2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stream", type=int, default=None,
                        help="use the first N training images as the stream (full grid of k "
                             "and memories, 2,000 test images): a middle size between --quick "
                             "and the full 60,000")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--data", type=Path, required=True, metavar="DIR",
                        help="Fashion-MNIST folder with the four IDX .gz files (required)")
    parser.add_argument("--wrap", action="store_true",
                        help="run the replay runs through smartloader.wrap (replay: section) "
                             "instead of the hand-written loop; writes *_wrap.json/.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    limit, test_limit = (2000, 1000) if args.quick else (None, None)
    if args.stream:
        limit, test_limit = args.stream, 2000
    if args.quick:
        HP.update(batch_size=64, ks=[1, 3])
    if args.seeds is None:
        args.seeds = 2 if args.quick else 3
    data, test = load(args.data, "train", limit), load(args.data, "test", test_limit)
    ref_epochs = [1] + [k + 1 for k in HP["ks"]]

    runs = []
    for seed in range(args.seeds):
        for e in ref_epochs:
            runs.append(train(data, test, seed, memory_fraction=None, k=0, epochs=e))
        for m in HP["memories"]:
            for k in HP["ks"]:
                runs.append(train_wrapped(data, test, seed, memory_fraction=m, k=k)
                            if args.wrap else
                            train(data, test, seed, memory_fraction=m, k=k, epochs=1))
        done = [r for r in runs if r["seed"] == seed]
        print(f"seed {seed}: {len(done)} runs, {sum(r['train_s'] for r in done):.0f} s", flush=True)

    name = ("replay_opin_quick" if args.quick else
            f"replay_opin_{args.stream}" if args.stream else "replay_opin") + ("_wrap" if args.wrap else "")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"hp": HP, "train_samples": len(data[1]), "test_samples": len(test[1]),
            "seeds": args.seeds, "threads": args.threads, "torch": torch.__version__,
            "path": "smartloader.wrap" if args.wrap else "plain loop"}
    (args.out / f"{name}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    md = (f"Test accuracy (%), mean ± std over {args.seeds} seeds; stream of {len(data[1])} "
          f"Fashion-MNIST images, batch {HP['batch_size']}, priority {HP['priority']}, "
          f"replay runs via {meta['path']}.\n\n"
          + table(runs, HP["memories"], HP["ks"], ref_epochs) + "\n")
    (args.out / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

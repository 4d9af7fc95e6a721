"""GPU benchmark: ResNet-18 on CIFAR-10, time to accuracy (uniform vs the ``combined``
preset) and SmartLoader's selection overhead timed with CUDA events, the selection path run
under ``torch.cuda.set_sync_debug_mode("error")`` (a host synchronisation there raises).

    python benchmarks/gpu/bench.py --stage --data path/to/cifar-10   # once, on the CPU side:
        # writes benchmarks/gpu/data/cifar10_small.npz (10k train + 5k test, uint8, 46 MB),
        # small enough to travel with a device run
    python benchmarks/gpu/bench.py --out DIR                          # on the GPU
    python benchmarks/gpu/bench.py --smoke --out DIR                  # CPU, tiny, seconds

``benchmarks/gpu/run.sh`` runs this and one selection run each through the DALI adapter
(GPU ``mixed`` decoding) and the FFCV adapter (``ToDevice``). Results: ``DIR/gpu_bench.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import smartloader
from smartloader.tools.models import BasicBlock, batch_augment

HERE = os.path.dirname(os.path.abspath(__file__))
STAGED = os.path.join(HERE, "data", "cifar10_small.npz")


class ResNet18(nn.Module):
    """The CIFAR ResNet-18 (3x3 stem, no max-pool, stages of 2 blocks at w, 2w, 4w, 8w)."""

    def __init__(self, classes=10, width=64):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU())
        layers, cin = [], w
        for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
            layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x):
        x = x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


class DeviceBatches:
    """Batches of tensors that already live on the device, reshuffled per epoch on the
    device (no host read). Yields ``(x, y, index)``."""

    def __init__(self, x, y, batch_size, seed):
        self.x, self.y, self.bs, self.seed, self.epoch = x, y, batch_size, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __iter__(self):
        g = torch.Generator(device=self.x.device).manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.x), generator=g, device=self.x.device)
        for b in range(len(self)):
            i = order[b * self.bs:(b + 1) * self.bs]
            yield self.x[i], self.y[i], i


def stage(data_dir, path=STAGED):
    from smartloader.tools.datasets import load_image_dir
    tx, ty, vx, vy = load_image_dir(data_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, train_x=tx[:10000].numpy(), train_y=ty[:10000].numpy(),
             test_x=vx[:5000].numpy(), test_y=vy[:5000].numpy())
    print(f"staged {path}: {os.path.getsize(path) / 2**20:.1f} MiB")


def load(smoke, device):
    if smoke:   # tiny synthetic colour images: the code path, not the numbers
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 10, (384,), generator=g)
        x = torch.rand(384, 3, 16, 16, generator=g) * 80 + y.view(-1, 1, 1, 1) * 17
        x = x.to(torch.uint8)
        return x[:256].to(device), y[:256].to(device), x[256:].to(device), y[256:].to(device)
    d = np.load(STAGED)
    return tuple(torch.from_numpy(d[k]).to(device)
                 for k in ("train_x", "train_y", "test_x", "test_y"))


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad(), _autocast(x.device):
        correct = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
                      for i in range(0, len(x), 1000))
    model.train()
    return correct / len(x)


def _autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model(args, device):
    torch.manual_seed(0)
    model = ResNet18(width=args.width).to(device)
    # channels-last only on CUDA: on the CPU build (torch 2.13) this tiny ResNet's backward in
    # channels-last crashed ("double free or corruption") or crawled
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def train(method, data, args, fraction, device):
    tx, ty, vx, vy = data
    steps = max(1, round(fraction * args.epochs * -(-len(tx) // args.batch_size)))
    model = _model(args, device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (
        0.05 * steps)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    loader = DeviceBatches(tx, ty, args.batch_size, seed=0)
    if method == "smartloader":
        cfg = smartloader.preset("combined", side=int(tx.shape[-1]), index_key=2)
        cfg.update(total_steps=steps, seed=0)
        loader = smartloader.wrap(loader, model, cfg)
    mag = getattr(loader, "magnitude", None)
    g = torch.Generator(device="cpu").manual_seed(1)
    step, epoch = 0, 0
    _sync(device)
    t0 = time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            m = mag.get() if mag is not None else 5.0
            pad = round(4 * m / 5 * x.shape[-1] / tx.shape[-1])
            with _autocast(device):
                losses = F.cross_entropy(model(_aug(x, g, pad)), y, reduction="none")
            opt.zero_grad(set_to_none=True)
            losses.mean().backward()
            if method == "smartloader":
                loader.report_losses(losses.detach())
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
        epoch += 1
    _sync(device)
    wall = time.perf_counter() - t0
    return {"method": method, "fraction": fraction, "steps": step, "wall_s": wall,
            "final_acc": evaluate(model, vx, vy)}


def _aug(x, g, pad):
    # batch_augment draws on the CPU generator; the gather indices move with x
    return batch_augment(x.cpu(), g, pad).to(x.device) if x.device.type == "cpu" else \
        _device_aug(x, pad)


def _device_aug(x, pad):
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if pad > 0:
        dx, dy = (int(v) for v in torch.randint(-pad, pad + 1, (2,)))   # host RNG: no sync
        x = torch.roll(x, (dy, dx), (2, 3))
    return x


def overhead(data, args, device, steps):
    """Selection path time per step with CUDA events (host timer on CPU), next() of the
    SmartLoader under sync-debug "error" on CUDA; and the raw loader's next() alone."""
    tx, ty, _, _ = data
    model = _model(args, device)
    cfg = {"total_steps": steps + 10, "seed": 0, "pool_factor": 2, "score_resolution": 16,
           "phases": [{"name": "select", "selection": "ranked"}]}
    sl = smartloader.wrap(DeviceBatches(tx, ty, args.batch_size, 0), model, cfg)
    cuda = device.type == "cuda"
    times = {"smartloader": [], "raw": []}
    for name, loader in (("raw", DeviceBatches(tx, ty, args.batch_size, 0)), ("smartloader", sl)):
        it = iter(loader)
        for i in range(steps):
            if cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                torch.cuda.set_sync_debug_mode("error")
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
            if cuda:
                b.record()
                b.synchronize()
                times[name].append(a.elapsed_time(b) / 1000)
            else:
                times[name].append(time.perf_counter() - t)
            del batch
    med = {k: float(np.median(v[2:])) for k, v in times.items()}
    return {"steps": steps, "timer": "cuda events" if cuda else "perf_counter",
            "sync_debug_mode": "error" if cuda else None,
            "raw_next_s_median": med["raw"], "smartloader_next_s_median": med["smartloader"],
            "selection_path_s_median": med["smartloader"] - med["raw"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (the test suite)")
    p.add_argument("--stage", action="store_true", help="write the staged CIFAR-10 subset")
    p.add_argument("--data", help="CIFAR-10 directory (with --stage)")
    p.add_argument("--out", default=os.path.join(HERE, "..", "results", "gpu"))
    p.add_argument("--epochs", type=int, help="epochs at budget 1.0 (default 30; smoke 2)")
    p.add_argument("--fractions", type=float, nargs="+",
                   help="budgets (default 0.7 0.85 1.0; smoke 0.7 1.0)")
    p.add_argument("--batch-size", type=int, help="default 512 (smoke 16)")
    p.add_argument("--width", type=int, help="ResNet-18 base width (default 64; smoke 4)")
    p.add_argument("--lr", type=float, default=0.2)
    args = p.parse_args(argv)
    if args.stage:
        if not args.data:
            p.error("--stage needs --data DIR (the CIFAR-10 binary batches)")
        stage(args.data)
        return 0
    args.epochs = args.epochs or (2 if args.smoke else 30)
    args.fractions = args.fractions or ([0.7, 1.0] if args.smoke else [0.7, 0.85, 1.0])
    args.batch_size = args.batch_size or (16 if args.smoke else 512)
    args.width = args.width or (4 if args.smoke else 64)
    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        p.error("no CUDA device: run with --smoke on a CPU")
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        if not os.path.exists(STAGED):
            p.error(f"{STAGED} is missing: run --stage --data DIR first and carry it")
    data = load(args.smoke, device)
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "config": {k: v for k, v in vars(args).items()},
           "runs": []}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gpu_bench.json")
    out["overhead"] = overhead(data, args, device, 6 if args.smoke else 50)
    print(f"overhead: {out['overhead']}", flush=True)
    for f in sorted(args.fractions, reverse=True):      # interleaved per budget
        for m in ("uniform", "smartloader"):
            if m == "uniform" and f not in (1.0, min(args.fractions)):
                continue
            r = train(m, data, args, f, device)
            out["runs"].append(r)
            with open(path, "w") as fh:
                json.dump(out, fh, indent=1)
            print(f"{m:>12} x{f:<5g} {r['steps']} steps {r['wall_s']:.1f} s "
                  f"{100 * r['final_acc']:.2f}%", flush=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

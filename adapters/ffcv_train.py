"""FFCV + SmartLoader: write a .beton, then train a small CNN on it with online batch selection
and a progressive resolution schedule that FFCV decodes epoch by epoch. One readable file.

What it does: generates a 10-class image set (stripes: class = horizontal/vertical x one of 5
colours; a fifth of the images are faint and noisy *hard* ones), writes the training part to a
real FFCV ``.beton`` with ``smartloader.adapters.ffcv.write_beton``, loads it with
``FFCVAdapter.from_beton`` (random-resized crop + flip, decoded by FFCV), wraps the adapter with
``smartloader.wrap`` and trains. The held-out images are evaluated in memory at 32 px.

FFCV changes the decoded size only between epochs (its buffers are allocated at ``iter()``), so
the run is planned in epochs and every resolution stage starts on an epoch boundary:

    epoch 0        uniform warm-up            16 px           B steps of one loader batch
    epochs 1-6     ranked selection, beta 1   20, 24, 28 px   B/2 steps, each a 2-batch pool
    epoch 7        uniform cool-down          32 px           B steps

with B = loader batches per epoch; every 4-px stage is B steps (two selection epochs), so
``resolution: progressive`` over the whole run puts each change exactly at an epoch start.
``smartloader.wrap`` checks this against the adapter's capabilities (``resolution: epoch``) and
would raise ``ConfigError`` for a schedule that changes mid-epoch. At each epoch start the
adapter sets FFCV's decoder to the scheduled size, so images are decoded at it, not resized
afterwards.

Measured on a 2-core x86 CPU shared with other jobs (load average 1.7-3.6), no GPU, torch
2.13.0+cpu, ffcv 1.0.2, numba 0.68.1. Training time includes numba compiling FFCV's pipeline
in epoch 0 (9-15 s); FFCV's crops and flips draw from numba's RNG, which is not seeded here,
so accuracy differs from run to run:

    python adapters/ffcv_train.py          320 steps: 95.90 / 93.55 / 96.97 / 96.19 / 96.00 %
                                           test accuracy (median 96.00 %) in 25.1-39.1 s of
                                           training (5 runs; 43-48 s with start-up)
    python adapters/ffcv_train.py --quick  80 steps: 83.98-88.67 % in 9.8-16.5 s (6 runs;
                                           512 training images; 23-38 s with start-up)

In the selection epochs 28-29% of the trained images are hard ones, against 19% in the data
(the uniform epochs: 19%).

Flags: ``--out DIR`` keeps the .beton and ``result.json`` there (default: a temporary directory,
removed afterwards); ``--quick`` is a tiny run for tests; ``--stage-epochs K`` makes every stage
K times longer (K uniform epochs, 2K selection epochs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

import smartloader
from smartloader.adapters.ffcv import FFCVAdapter, write_beton
from smartloader.schedules import resolution_grid

hyp = {
    "n_train": 4096,          # images written to the .beton
    "n_test": 1024,           # held-out images, evaluated in memory
    "size": 32,               # px, stored image side (the full resolution)
    "batch_size": 64,         # images per step
    "lr": 0.1,                # peak SGD learning rate (nesterov, momentum 0.9)
    "warmup": 0.1,            # linear LR warm-up, fraction of steps; cosine to 0 after
    "weight_decay": 5e-4,     # L2, applied by SGD
    "width": 16,              # channels of the first conv block (x2, x4 later)
    "resolution": {"min": 16, "max": 32, "increment": 4},  # px stages 16, 20, ..., 32
    "pool_factor": 2,         # a selection step scores 2 loader batches and keeps 1
    "beta": 1.0,              # hardness of the ranked selection (0 = uniform)
    "score_resolution": 16,   # px of the scoring forward (never upsamples)
}
quick = {"n_train": 512, "n_test": 256, "batch_size": 32}

TINTS = np.array([[1.0, .25, .25], [.25, 1.0, .25], [.25, .25, 1.0],    # red, green, blue,
                  [1.0, 1.0, .25], [1.0, .25, 1.0]])                  # yellow, magenta


def make_images(n: int, size: int, seed: int):
    """``(images uint8 [n, size, size, 3], labels int64 [n], hard bool [n])``.

    Class ``c``: stripes that are horizontal (even ``c``) or vertical (odd ``c``), tinted with
    ``TINTS[c // 2]``; random stripe frequency and phase. Hard images (20%) have a third of the
    contrast and four times the noise. Flips and crops keep the class.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    theta = np.where(labels % 2 == 1, np.pi / 2, 0.0) + rng.normal(0, 0.1, n)
    freq = rng.uniform(0.5, 1.0, n)                 # radians per px: periods of 6-12 px
    phase = rng.uniform(0, 2 * np.pi, n)
    hard = rng.random(n) < 0.2
    contrast = np.where(hard, 0.33, 1.0) * rng.uniform(0.6, 1.0, n)
    noise = np.where(hard, 0.8, 0.2)
    ax = np.arange(size) - size / 2
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    proj = xx * np.sin(theta)[:, None, None] + yy * np.cos(theta)[:, None, None]
    wave = np.sin(freq[:, None, None] * proj + phase[:, None, None])
    img = (contrast[:, None, None, None] * wave[..., None] * TINTS[labels // 2][:, None, None]
           + noise[:, None, None, None] * rng.standard_normal((n, size, size, 3)))
    return np.clip(128 + 64 * img, 0, 255).astype(np.uint8), labels, hard


class Images:
    """The indexed dataset ``write_beton`` reads: ``[i] -> (uint8 HxWx3, int label)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


class Net(torch.nn.Module):
    """conv-bn-relu blocks with pooling, global average pool, linear; any input size.
    Takes the adapter's uint8 NCHW images and normalises inside."""

    def __init__(self, w: int, classes: int = 10):
        super().__init__()

        def block(i, o):
            return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o),
                    torch.nn.ReLU(inplace=True)]
        self.body = torch.nn.Sequential(*block(3, w), torch.nn.MaxPool2d(2),
                                        *block(w, 2 * w), torch.nn.MaxPool2d(2),
                                        *block(2 * w, 4 * w))
        self.head = torch.nn.Linear(4 * w, classes)

    def forward(self, x):
        x = x.float() / 127.5 - 1.0
        return self.head(self.body(x).mean((2, 3)))


class RecordingFFCVAdapter(FFCVAdapter):
    """FFCVAdapter that counts the image size of every batch FFCV decoded (before SmartLoader
    sees it), to show the decoder really followed the schedule."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loaded = Counter()                    # image side (px) -> batches loaded

    def __iter__(self):
        for batch in super().__iter__():
            self.loaded[batch["image"].shape[-1]] += 1
            yield batch


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[i:i + 512]).argmax(1) == y[i:i + 512]).sum())
                      for i in range(0, len(x), 512))
    model.train()
    return correct / len(x)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="directory for the .beton and result.json "
                                 "(default: a temporary one, removed at the end)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds of training")
    p.add_argument("--stage-epochs", type=int, default=1,
                   help="uniform epochs per resolution stage; a selection stage takes "
                        "pool_factor times as many (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: FFCV's ToDevice puts the batches on the GPU; the model runs there")
    args = p.parse_args(argv)
    h = {**hyp, **(quick if args.quick else {})}
    print(f"ffcv_train: smartloader from {os.path.dirname(smartloader.__file__)}, "
          f"torch {torch.__version__}")
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="ffcv_train_")
        out = tmp.name
    else:
        tmp, out = None, args.out
        os.makedirs(out, exist_ok=True)

    images, labels, hard = make_images(h["n_train"] + h["n_test"], h["size"], args.seed)
    n = h["n_train"]
    beton = os.path.join(out, "train.beton")
    t0 = time.perf_counter()
    write_beton(beton, Images(images[:n], labels[:n]))
    write_s = time.perf_counter() - t0
    test_x = torch.from_numpy(images[n:]).permute(0, 3, 1, 2).contiguous()
    test_y = torch.from_numpy(labels[n:])

    r = h["resolution"]
    adapter = RecordingFFCVAdapter.from_beton(beton, batch_size=h["batch_size"],
                                              resolution=r["min"], seed=args.seed,
                                              device="cuda" if args.device == "cuda" else None)
    per_epoch = len(adapter)                        # B: loader batches per epoch
    pf, k = h["pool_factor"], args.stage_epochs
    assert per_epoch % pf == 0, "a selection epoch must be a whole number of pools"
    # Every resolution stage is k*B steps: k uniform epochs (warm-up, cool-down) or pf*k
    # selection epochs (a selection step consumes pf batches). Equal stages are what
    # `progressive` makes, so each change lands on an epoch start.
    stages = len(resolution_grid(r["min"], r["max"], r["increment"]))
    stage_steps = k * per_epoch
    total = stages * stage_steps
    epochs = 2 * k + pf * k * (stages - 2)
    config = {
        "seed": args.seed,
        "total_steps": total,
        "pool_factor": pf,
        "score_resolution": h["score_resolution"],
        "index_key": "index",                     # the .beton's index field: dataset ids
        "phases": [{"name": "warmup", "steps": stage_steps, "selection": "uniform"},
                   {"name": "select", "steps": (stages - 2) * stage_steps, "selection": "ranked",
                    "beta": h["beta"]},
                   {"name": "cooldown", "selection": "uniform"}],
        "resolution": {"type": "progressive", **r},
    }
    torch.manual_seed(args.seed)
    model = Net(h["width"]).to(args.device)
    test_x, test_y = test_x.to(args.device), test_y.to(args.device)
    loader = smartloader.wrap(adapter, model, config)  # <- the one line; checks the schedule
    #                                                    against FFCV's capabilities
    opt = torch.optim.SGD(model.parameters(), lr=h["lr"], momentum=0.9, nesterov=True,
                          weight_decay=h["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (
        h["warmup"] * total)) * 0.5 * (1 + math.cos(math.pi * s / total)))

    print(f"ffcv_train: {n} images in {beton} ({os.path.getsize(beton) / 1e6:.1f} MB, written "
          f"in {write_s:.1f} s); {per_epoch} loader batches of {h['batch_size']} per epoch; "
          f"{epochs} epochs, {total} steps")
    hard_t = torch.from_numpy(hard).to(args.device)
    picked = Counter()                              # phase -> (hard, all) samples trained on
    step, epoch_rows, t0 = 0, [], time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        t_epoch, losses, phases = time.perf_counter(), [], Counter()
        for batch in loader:
            loss = F.cross_entropy(model(batch["image"]), batch["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            phase = loader.stats.phase
            phases[phase] += 1
            picked[phase, "hard"] += int(hard_t[batch["index"]].sum())
            picked[phase, "all"] += len(batch["index"])
        decoded = tuple(adapter.decoder.output_size)
        row = {"epoch": epoch, "phases": dict(phases), "steps": sum(phases.values()),
               "decoded": list(decoded), "loss": float(np.mean(losses)),
               "seconds": time.perf_counter() - t_epoch}
        epoch_rows.append(row)
        print(f"epoch {epoch:2d}  {'+'.join(phases):8s} {row['steps']:4d} steps  decoded "
              f"{decoded[0]}x{decoded[1]} px  loss {row['loss']:.3f}  {row['seconds']:5.1f} s",
              flush=True)
    wall = time.perf_counter() - t0
    acc = evaluate(model, test_x, test_y)
    adapter.close()

    share = {ph["name"]: picked[ph["name"], "hard"] / picked[ph["name"], "all"]
             for ph in config["phases"] if picked[ph["name"], "all"]}
    result = {"adapter": "ffcv", "loader": type(adapter).__name__, "config": config,
              "device": args.device, "image_device": str(batch["image"].device),
              "beton": beton,
              "beton_bytes": os.path.getsize(beton), "train_images": n,
              "batches_per_epoch": per_epoch, "epochs": epochs, "steps": step,
              "total_steps": total, "wall_s": wall, "accuracy": acc,
              "loaded_batches_by_size": {str(k): v for k, v in sorted(adapter.loaded.items())},
              "hard_share_data": float(hard[:n].mean()), "hard_share_trained": share,
              "per_epoch": epoch_rows}
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("loaded by FFCV (px: batches): "
          + ", ".join(f"{k}: {v}" for k, v in result["loaded_batches_by_size"].items()))
    print("hard share of trained samples: "
          + ", ".join(f"{ph} {100 * s:.0f}%" for ph, s in share.items())
          + f" (data: {100 * result['hard_share_data']:.0f}%)")
    print(f"ffcv_train: {step} steps, {wall:.1f} s, test accuracy {100 * acc:.2f}%")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

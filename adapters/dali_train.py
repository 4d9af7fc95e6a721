"""NVIDIA DALI + SmartLoader: write image files, then train a small CNN from a DALI pipeline with
online batch selection and resolution and augmentation schedules that DALI follows batch by
batch. One readable file.

What it does: generates a 10-class image set (stripes: class = horizontal/vertical x one of 5
colours; a fifth of the images are faint and noisy *hard* ones), writes the training part as
PNG files, builds a DALI pipeline over them with
``smartloader.adapters.dali.build_classification_pipeline`` (decode, random-area crop, resize,
rotation and brightness, flip, normalise; on the CPU here, ``device_id=None``), wraps
``DALIAdapter`` with ``smartloader.wrap`` and trains. The held-out images are evaluated in
memory at 32 px.

The config is the paper's shape over ``--steps`` steps: a 5% uniform warm-up, ranked selection
(beta 1, pools of 2 loader batches) and a 10% uniform cool-down, with a progressive resolution
16 -> 32 px in 4-px stages and an augmentation magnitude rising 2 -> 5. DALI takes the size and
the magnitude per batch as argument inputs, so ``schedule_fns`` turns both schedules into
callbacks of the pipeline's batch counter; stages may start mid-epoch (which FFCV cannot do),
and every pool is decoded at the resolution of the step it feeds.

Measured on a 2-core x86 CPU shared with other jobs (load average 1.7-3.6), no GPU, torch
2.13.0+cpu (1 thread, see ``torch_threads``), nvidia-dali-cuda120 2.4.0 running its CPU
operators. The run is seeded, so the accuracy repeats; the time depends on the load:

    python adapters/dali_train.py          320 steps: 95.90 % test accuracy in 17.0 / 37.4 /
                                           28.4 s of training (3 runs; 25-60 s with start-up
                                           and PNG writing)
    python adapters/dali_train.py --quick  60 steps: 84.38 % in 2.1-3.9 s (6 runs; 512 images;
                                           10-15 s with start-up)

In the selection phase 29% of the trained images are hard ones, against 19% in the data.

Flags: ``--steps N`` training steps; ``--out DIR`` keeps the PNG files and ``result.json``
there (default: a temporary directory, removed afterwards); ``--quick`` is a tiny run for tests.
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
from PIL import Image

import smartloader
from smartloader.adapters.dali import (DALIAdapter, batches_per_epoch,
                                       build_classification_pipeline, schedule_fns)

hyp = {
    "n_train": 4096,          # PNG files the pipeline reads
    "n_test": 1024,           # held-out images, evaluated in memory
    "size": 32,               # px, stored image side (the full resolution)
    "steps": 320,             # training steps (one yielded batch each)
    "batch_size": 64,         # images per step
    "lr": 0.1,                # peak SGD learning rate (nesterov, momentum 0.9)
    "warmup": 0.1,            # linear LR warm-up, fraction of steps; cosine to 0 after
    "weight_decay": 5e-4,     # L2, applied by SGD
    "width": 16,              # channels of the first conv block (x2, x4 later)
    "max_rotation": 20.0,     # degrees of rotation at magnitude 10 (the pipeline's m = 1)
    "threads": 2,             # DALI CPU threads
    "torch_threads": 1,       # torch's own; more spin-wait against DALI's threads (below)
    "smart": {                # the smartloader.wrap config (total_steps is added below)
        "pool_factor": 2,     # a selection step scores 2 loader batches and keeps 1
        "score_resolution": 16,   # px of the scoring forward (never upsamples)
        "index_key": "index",     # the reader's "label" is the dataset index: sample ids
        "phases": [{"name": "warmup", "fraction": 0.05, "selection": "uniform"},
                   {"name": "select", "selection": "ranked", "beta": 1.0},
                   {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}],
        "resolution": {"type": "progressive", "min": 16, "max": 32, "increment": 4},
        "augment": {"type": "linear", "min": 2, "max": 5},   # magnitude 0..10, 5 = standard
    },
}
quick = {"n_train": 512, "n_test": 256, "batch_size": 32, "steps": 60}

TINTS = np.array([[1.0, .25, .25], [.25, 1.0, .25], [.25, .25, 1.0],    # red, green, blue,
                  [1.0, 1.0, .25], [1.0, .25, 1.0]])                  # yellow, magenta


def make_images(n: int, size: int, seed: int):
    """``(images uint8 [n, size, size, 3], labels int64 [n], hard bool [n])``.

    Class ``c``: stripes that are horizontal (even ``c``) or vertical (odd ``c``), tinted with
    ``TINTS[c // 2]``; random stripe frequency and phase. Hard images (20%) have a third of the
    contrast and four times the noise. Flips, crops and small rotations keep the class.
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


class Net(torch.nn.Module):
    """conv-bn-relu blocks with pooling, global average pool, linear; any input size.
    Takes float images normalised to [-1, 1] (the pipeline's mean = std = 127.5)."""

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
        return self.head(self.body(x).mean((2, 3)))


class RecordingDALIAdapter(DALIAdapter):
    """DALIAdapter that counts the image size of every batch the pipeline produced (before
    SmartLoader sees it), to show DALI really followed the schedule."""

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
    p.add_argument("--steps", type=int, help=f"training steps (default {hyp['steps']}, "
                                             f"--quick {quick['steps']})")
    p.add_argument("--out", help="directory for the PNG files and result.json "
                                 "(default: a temporary one, removed at the end)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds of training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="cuda: decode on the GPU (DALI 'mixed'), run the pipeline and the "
                        "model there")
    args = p.parse_args(argv)
    h = {**hyp, **(quick if args.quick else {})}
    gpu = args.device == "cuda"
    print(f"dali_train: smartloader from {os.path.dirname(smartloader.__file__)}, "
          f"torch {torch.__version__}")
    steps = args.steps or h["steps"]
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="dali_train_")
        out = tmp.name
    else:
        tmp, out = None, args.out
    image_dir = os.path.join(out, "train")
    os.makedirs(image_dir, exist_ok=True)

    images, labels, hard = make_images(h["n_train"] + h["n_test"], h["size"], args.seed)
    n = h["n_train"]
    t0 = time.perf_counter()
    files = []
    for i in range(n):
        files.append(os.path.join(image_dir, f"{i:05d}.png"))
        Image.fromarray(images[i]).save(files[-1])
    write_s = time.perf_counter() - t0
    train_labels = [int(c) for c in labels[:n]]
    test_x = torch.from_numpy(images[n:]).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    test_y = torch.from_numpy(labels[n:])

    config = {**h["smart"], "seed": args.seed, "total_steps": steps}
    bs = h["batch_size"]
    size_fn, magnitude_fn = schedule_fns(config, batches_per_epoch(n, bs))
    pipe = build_classification_pipeline(
        files, train_labels, bs, size_fn, magnitude_fn, seed=args.seed,
        device_id=0 if gpu else None,
        num_threads=h["threads"], max_rotation=h["max_rotation"],
        mean=(127.5,) * 3, std=(127.5,) * 3, decode="mixed" if gpu else "cpu")
    adapter = RecordingDALIAdapter(pipe, labels=train_labels)
    # On 2 cores, torch's default OpenMP threads and DALI's threads fought over the CPU:
    # --quick took 12-23 s of training with torch's default, 2.5 s with 1 thread.
    torch.set_num_threads(h["torch_threads"])
    torch.manual_seed(args.seed)
    model = Net(h["width"]).to(args.device)
    test_x, test_y = test_x.to(args.device), test_y.to(args.device)
    loader = smartloader.wrap(adapter, model, config)   # <- the one line
    opt = torch.optim.SGD(model.parameters(), lr=h["lr"], momentum=0.9, nesterov=True,
                          weight_decay=h["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (
        h["warmup"] * steps)) * 0.5 * (1 + math.cos(math.pi * s / steps)))

    print(f"dali_train: {n} PNG files in {image_dir} (written in {write_s:.1f} s); "
          f"{len(adapter)} loader batches of {bs} per epoch; {steps} steps")
    hard_t = torch.from_numpy(hard).to(args.device)
    picked = Counter()                              # (phase, "hard"/"all") -> samples
    sizes = Counter()                               # training resolution -> steps
    step, epoch, t0 = 0, 0, time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for batch in loader:
            loss = F.cross_entropy(model(batch["image"]), batch["label"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            s = loader.stats
            picked[s.phase, "hard"] += int(hard_t[batch["index"]].sum())
            picked[s.phase, "all"] += len(batch["index"])
            sizes[batch["image"].shape[-1]] += 1
            step += 1
            if step % max(1, steps // 8) == 0 or step == steps:
                print(f"step {step:4d}  epoch {epoch}  {s.phase:8s} {s.resolution} px  "
                      f"magnitude {s.magnitude:.2f}  loss {loss.item():.3f}  "
                      f"{time.perf_counter() - t0:5.1f} s", flush=True)
            if step == steps:
                break
        epoch += 1
    wall = time.perf_counter() - t0
    acc = evaluate(model, test_x, test_y)

    share = {ph["name"]: picked[ph["name"], "hard"] / picked[ph["name"], "all"]
             for ph in config["phases"] if picked[ph["name"], "all"]}
    result = {"adapter": "dali", "loader": type(adapter).__name__, "config": config,
              "device": args.device, "decode": "mixed" if gpu else "cpu",
              "image_device": str(batch["image"].device),
              "files": len(files),
              "image_dir": image_dir, "batches_per_epoch": len(adapter), "epochs": epoch,
              "steps": step, "total_steps": steps, "wall_s": wall, "accuracy": acc,
              "trained_steps_by_size": {str(k): v for k, v in sorted(sizes.items())},
              "loaded_batches_by_size": {str(k): v for k, v in sorted(adapter.loaded.items())},
              "hard_share_data": float(hard[:n].mean()), "hard_share_trained": share}
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("loaded by DALI (px: batches): "
          + ", ".join(f"{k}: {v}" for k, v in result["loaded_batches_by_size"].items()))
    print("hard share of trained samples: "
          + ", ".join(f"{ph} {100 * s:.0f}%" for ph, s in share.items())
          + f" (data: {100 * result['hard_share_data']:.0f}%)")
    print(f"dali_train: {step} steps, {wall:.1f} s, test accuracy {100 * acc:.2f}%")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

"""CIFAR-10 with SmartLoader in one line: a whole training in one readable file.

Hardware and result (measured 2026-11-21): 2-core x86 CPU, no GPU, torch 2.13.0+cpu,
``OMP_NUM_THREADS=1``, the SmartLoader and the ``--uniform`` run of each seed side by side on
the two cores; default 1000 steps, seeds 0 / 1 / 2, validation on data_batch_5:

    smartloader  70.50 / 70.12 / 69.98 %   in 50.7 / 49.8 / 44.9 s   (median 70.12 %, 49.8 s)
    uniform      70.99 / 69.72 / 70.12 %   in 52.0 / 48.5 / 43.4 s   (median 70.12 %, 48.5 s)

Same median accuracy, 1.03x the time: **no speed-up at this length on CPU** (docs/results.md
says where and why). Selection here costs no extra forward (the ``history`` scorer ranks by
each sample's last training loss, which the loop reports back), so its price is ~6% of a step
of bookkeeping. A ``resolution`` schedule (super-progressive 16->32 px) made the runs 1.4x
faster but cost this model 5-8 points, so it is off.

    python examples/cifar10_flagship.py path/to/cifar-10            # defaults below
    python examples/cifar10_flagship.py path/to/cifar-10 --steps 400 --uniform

Data: CIFAR-10 binary; trains on data_batch_1..4 (40,000 images), validates on data_batch_5
(the official test batch is not available here). The loader yields ``(x, y, index)``
uint8 NCHW batches from memory; augmentation (flip + 2-px translate) is batched on tensors.
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

import smartloader
from smartloader.tools.datasets import ShuffledBatches, load_image_dir

hyp = {
    "steps": 1000,            # training steps (one yielded batch each)
    "batch_size": 64,         # images per step
    "lr": 0.05,               # peak SGD learning rate (nesterov, momentum 0.9)
    "warmup": 0.05,           # linear LR warm-up, fraction of steps; cosine to 0 after
    "weight_decay": 5e-4,     # L2, applied by SGD
    "width": 16,              # channels of the first conv block (x2, x4 later)
    "translate": 2,           # px, random translation by reflect-pad + crop
    "smart": {                # smartloader.wrap config (docs/config.md, docs/schedules.md)
        "pool_factor": 2,     # pool = 2 batches, one is kept
        "index_key": 2,       # batches are (image, label, dataset index)
        "scorer": {"type": "history"},  # rank by each sample's last training loss: no extra
                              # forward (the loop reports losses back; docs/strategies.md)
        # No resolution schedule: super-progressive 16->32 px cost this model 5-8 points at
        # 1000 steps (docs/results.md), though it paid off for the smaller benchmark CNN.
    },                        # default phases: 5% uniform warm-up, ranked beta 1, 10% cool-down
}


class Net(torch.nn.Module):
    """conv-bn-relu blocks with pooling; takes uint8 NCHW, normalises inside."""

    def __init__(self, w: int):
        super().__init__()

        def block(i, o):
            return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o),
                    torch.nn.ReLU(inplace=True)]
        self.body = torch.nn.Sequential(*block(3, w), torch.nn.MaxPool2d(2),
                                        *block(w, 2 * w), torch.nn.MaxPool2d(2),
                                        *block(2 * w, 4 * w), torch.nn.MaxPool2d(2),
                                        *block(4 * w, 4 * w))
        self.head = torch.nn.Linear(4 * w, 10)

    def forward(self, x):
        x = x.float() / 127.5 - 1.0
        return self.head(self.body(x).amax((2, 3)))


def augment(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation of a batch (one shift per batch: cheap).
    Works at any size, so a ``resolution`` schedule in ``hyp["smart"]`` can be tried."""
    flip = torch.rand(len(x), generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if pad:
        h, w = x.shape[-2:]
        dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
        x = F.pad(x.float(), (pad,) * 4, mode="reflect")[..., dy:dy + h, dx:dx + w]
    return x


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
                      for i in range(0, len(x), 1000))
    model.train()
    return correct / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", help="CIFAR-10 directory (binary version)")
    p.add_argument("--steps", type=int, default=hyp["steps"])
    p.add_argument("--uniform", action="store_true", help="baseline: no SmartLoader")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    steps = args.steps
    tx, ty, vx, vy = load_image_dir(args.data)
    torch.manual_seed(args.seed)
    model = Net(hyp["width"])
    opt = torch.optim.SGD(model.parameters(), lr=hyp["lr"], momentum=0.9, nesterov=True,
                          weight_decay=hyp["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (
        hyp["warmup"] * steps)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    loader = ShuffledBatches(tx, ty, hyp["batch_size"], seed=args.seed)
    if not args.uniform:
        loader = smartloader.wrap(loader, model, hyp["smart"], total_steps=steps,
                                  seed=args.seed)  # <- the one line
    g = torch.Generator().manual_seed(args.seed)
    step, epoch, t0 = 0, 0, time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            losses = F.cross_entropy(model(augment(x, hyp["translate"], g)), y,
                                     reduction="none")
            loss = losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if not args.uniform:
                loader.report_losses(losses.detach())  # feeds the history scorer
            opt.step()
            sched.step()
            step += 1
            if step % max(1, steps // 10) == 0:
                print(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - t0:6.1f} s",
                      flush=True)
            if step == steps:
                break
        epoch += 1
    wall = time.perf_counter() - t0
    acc = evaluate(model, vx, vy)
    print(f"{'uniform' if args.uniform else 'smartloader'}: {steps} steps, {wall:.1f} s, "
          f"validation accuracy (data_batch_5) {100 * acc:.2f}%")
    if not args.uniform:
        print(loader.stats)


if __name__ == "__main__":
    main()

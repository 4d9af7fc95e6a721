"""``python -m smartloader demo``: time to the same accuracy, uniform vs SmartLoader.

Trains a small CNN to completion at several step budgets (fractions of ``--steps``, the
learning-rate schedule compressed to each), once uniformly and once through
:func:`smartloader.wrap` with the ``combined`` preset, the two interleaved budget by budget
so machine drift hits both alike. The target is uniform's accuracy at the full budget. Two
numbers are reported separately and then multiplied:

- **steps to target**: the budget at which SmartLoader's accuracy reaches the target,
  interpolated linearly between the budgets around it (uniform's own, too: a compressed
  uniform schedule may reach it early, and that is the honest baseline);
- **per-step cost**: SmartLoader's wall time per step over uniform's, the median of the
  paired budgets.

Time to target = steps to target x time per step; the speed-up is uniform's time to target
over SmartLoader's. The demo says plainly when there is no win. A plot of final accuracy vs
wall time goes to ``--plot`` (SVG, no extra dependency). Built-in procedurally generated
images by default (no download); ``--data DIR`` takes MNIST/Fashion-MNIST IDX or CIFAR-10
binary.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from smartloader import wrap
from smartloader.config.presets import preset
from smartloader.scoring.proxy_model import ProxyNet
from smartloader.tools.datasets import ShuffledBatches, load_image_dir, synthetic_images
from smartloader.tools.svg_plot import line_plot_svg


class SmallCNN(ProxyNet):
    """conv-bn-relu x3 with pooling, global average pool, linear (the built-in proxy's
    network). Takes uint8 NCHW; any input is scaled from 0..255 to [-1, 1]."""

    def __init__(self, in_channels: int, classes: int, width: int = 16):
        super().__init__(in_channels, classes, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float() / 127.5 - 1.0)


@dataclass
class RunResult:
    name: str
    fraction: float
    steps: int
    wall_s: float
    overhead_s: float
    accuracy: float

    @property
    def step_s(self) -> float:
        return self.wall_s / max(1, self.steps)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 1000) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += int((model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum())
    model.train()
    return correct / len(x)


def demo_config(side: int, steps: int, seed: int) -> dict:
    """The SmartLoader run of the demo: the ``combined`` preset (ranked selection on the
    training losses, progressive resolution, rising augmentation) at ``steps`` steps."""
    cfg = preset("combined", side=side, index_key=2)
    cfg.update(total_steps=steps, seed=seed)
    return cfg


def _augment(x: torch.Tensor, g: torch.Generator, magnitude: float) -> torch.Tensor:
    # translation only: a mirrored grating has another orientation, i.e. another class
    from smartloader.tools.models import batch_augment
    return batch_augment(x, g, round(2 * magnitude / 5.0), flip=False)


def train(name: str, data, steps: int, batch_size: int, seed: int, lr: float,
          config: dict | None, quiet: bool = False, fraction: float = 1.0) -> RunResult:
    """One complete training of ``steps`` steps (5% LR warm-up, cosine to zero); through
    SmartLoader when ``config`` is given. Evaluation is not timed."""
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
    if config is not None:
        loader = wrap(loader, model, config,
                      callback=lambda s: overhead.__setitem__(0, overhead[0] + s.overhead_s))
    magnitude = getattr(loader, "magnitude", None)
    g = torch.Generator().manual_seed(seed + 1)
    bar = tqdm(total=steps, desc=f"{name} {fraction:g}x", unit="step", disable=quiet,
               file=sys.stderr)
    step, epoch = 0, 0
    start = time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            m = magnitude.get() if magnitude is not None else 5.0
            losses = F.cross_entropy(model(_augment(x, g, m)), y, reduction="none")
            opt.zero_grad(set_to_none=True)
            losses.mean().backward()
            if config is not None:
                loader.report_losses(losses.detach())
            opt.step()
            sched.step()
            step += 1
            if not quiet:  # the note reads the loss back: only when it is shown
                bar.set_postfix_str(f"loss {losses.mean().item():.3f}", refresh=False)
            bar.update()
            if step == steps:
                break
        epoch += 1
    wall = time.perf_counter() - start
    bar.close()
    return RunResult(name, fraction, steps, wall, overhead[0], evaluate(model, test_x, test_y))


def steps_to_target(runs: list[RunResult], target: float) -> tuple[float | None, str]:
    """Steps at which the budget curve of ``runs`` first reaches ``target``: interpolated
    linearly in accuracy between the budgets around it. ``(None, why)`` when no budget
    reaches it; ``(steps, "at most")`` when the smallest budget already does."""
    runs = sorted(runs, key=lambda r: r.steps)
    for i, r in enumerate(runs):
        if r.accuracy >= target - 1e-12:
            if i == 0:
                return float(r.steps), "at most"
            lo = runs[i - 1]
            t = (target - lo.accuracy) / (r.accuracy - lo.accuracy)
            return lo.steps + t * (r.steps - lo.steps), "interpolated"
    return None, f"not reached (best {100 * max(r.accuracy for r in runs):.2f}%)"


def compare(results: list[RunResult]) -> dict:
    """The demo's verdict from interleaved uniform / SmartLoader runs at the same budgets."""
    uni = [r for r in results if r.name == "uniform"]
    sl = [r for r in results if r.name == "smartloader"]
    full = max(uni, key=lambda r: r.steps)
    target = full.accuracy
    pairs = [(u, s) for u in uni for s in sl if u.steps == s.steps]
    cost = sorted(s.step_s / u.step_s for u, s in pairs)
    per_step = cost[len(cost) // 2] if len(cost) % 2 else sum(cost[len(cost) // 2 - 1:
                                                                 len(cost) // 2 + 1]) / 2
    uni_steps, uni_how = steps_to_target(uni, target)
    sl_steps, sl_how = steps_to_target(sl, target)
    out = {"target": target, "full_steps": full.steps, "per_step_cost": per_step,
           "uniform_steps": uni_steps, "uniform_how": uni_how,
           "smartloader_steps": sl_steps, "smartloader_how": sl_how, "speedup": None}
    if sl_steps is not None:
        out["speedup"] = uni_steps / (sl_steps * per_step)
    return out


def format_table(results: list[RunResult]) -> str:
    rows = [("run", "budget", "steps", "wall time", "per step", "smartloader overhead",
             "test accuracy")]
    for r in results:
        over = "-" if r.overhead_s == 0 else f"{r.overhead_s:.1f} s ({100 * r.overhead_s / r.wall_s:.1f}%)"
        rows.append((r.name, f"{r.fraction:g}x", str(r.steps), f"{r.wall_s:.1f} s",
                     f"{1000 * r.step_s:.1f} ms", over, f"{100 * r.accuracy:.2f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(c: dict) -> str:
    """What the comparison says, in words."""
    t = 100 * c["target"]
    lines = [f"target: uniform's accuracy at its full budget, {t:.2f}% ({c['full_steps']} steps)",
             f"per-step cost: SmartLoader {c['per_step_cost']:.2f}x uniform's time per step "
             f"(median of the paired budgets)"]
    u, s = c["uniform_steps"], c["smartloader_steps"]
    lines.append(f"steps to target: uniform {u:.0f} ({c['uniform_how']}); SmartLoader "
                 + (f"{s:.0f} ({c['smartloader_how']})" if s is not None else
                    c["smartloader_how"]))
    if c["speedup"] is None:
        lines.append("NO WIN on this data: SmartLoader did not reach uniform's accuracy at any "
                     "budget tried.")
    elif c["speedup"] < 1.0:
        lines.append(f"NO WIN on this data: SmartLoader needs {1 / c['speedup']:.2f}x "
                     f"uniform's time to reach its accuracy.")
    else:
        lines.append(f"time to the same accuracy: SmartLoader {c['speedup']:.2f}x faster than "
                     f"uniform (steps {s:.0f} vs {u:.0f}, x {c['per_step_cost']:.2f} per step)")
    lines.append("One seed and a few budgets: differences of a few tenths of a point are "
                 "noise; benchmarks/speedup.py measures 5 seeds.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="smartloader demo", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="directory with MNIST/Fashion-MNIST IDX or CIFAR-10 .bin "
                                   "files (default: built-in synthetic images)")
    p.add_argument("--steps", type=int, default=900, help="steps of the full budget")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.75, 1.0],
                   help="fractions of --steps each method trains to completion at (with 1.0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--plot", default="smartloader_demo.svg",
                   help="SVG plot of accuracy vs wall time ('' for none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if 1.0 not in args.budgets or any(not 0 < b <= 1 for b in args.budgets):
        p.error(f"--budgets must lie in (0, 1] and include 1.0 (uniform's full budget sets "
                f"the target), got {args.budgets}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.data:
        data = load_image_dir(args.data)
        source = args.data
    else:
        data = synthetic_images(seed=args.seed)
        source = "built-in synthetic gratings (8000 train / 2000 test, 32x32)"
    side = int(data[0].shape[-1])
    print(f"data: {source}; {len(data[0])} train images {tuple(data[0].shape[1:])}, "
          f"{len(data[2])} test", flush=True)
    results = []
    for f in sorted(set(args.budgets), reverse=True):  # interleaved, budget by budget
        steps = max(1, round(f * args.steps))
        results.append(train("uniform", data, steps, args.batch_size, args.seed, args.lr,
                             None, args.quiet, f))
        results.append(train("smartloader", data, steps, args.batch_size, args.seed, args.lr,
                             demo_config(side, steps, args.seed), args.quiet, f))
    c = compare(results)
    print()
    print(format_table(results))
    print()
    print(verdict(c))
    if args.plot:
        series = []
        for name in ("uniform", "smartloader"):
            rs = sorted((r for r in results if r.name == name), key=lambda r: r.steps)
            series.append((name, [r.wall_s for r in rs], [100 * r.accuracy for r in rs]))
        line_plot_svg(series, args.plot, "final accuracy vs training time, one budget per point",
                      "wall time of the whole training (s)", "test accuracy (%)",
                      hline=("target", 100 * c["target"]))
        print(f"plot: {args.plot}")
    print("\nsmartloader run: the 'combined' preset (smartloader.preset('combined', side, "
          "index_key)): ranked selection on the reported training losses, resolution "
          f"{', '.join(str(v) for v in _grid(side))} px rising to full size at 60% of "
          "training, augmentation magnitude 2.5 -> 5.")
    return 0


def _grid(side: int) -> list[int]:
    from smartloader.schedules.resolution import resolution_grid
    r = preset("combined", side=side)["resolution"]
    return resolution_grid(r["min"], r["max"], r["increment"])


if __name__ == "__main__":
    sys.exit(main())

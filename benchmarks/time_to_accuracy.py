"""Time to accuracy: uniform vs SmartLoader on the same model and schedule (GitHub issue 8).

For each seed the methods run back to back (interleaved), so machine load hits both alike.
Every ``--eval-every`` steps the model is evaluated on a fixed validation set; evaluation time
is excluded from the wall clock. Reported:

- uniform's final accuracy (median over seeds) = the *target*;
- for each selection method, the steps and wall time at which it first reaches the target
  (median over seeds; "not reached" when a seed never does), and the wall-clock ratio;
- accuracy at equal wall-clock budgets (last evaluation at or before the budget);
- a PNG of accuracy vs wall time, JSON and a markdown table under ``benchmarks/results/``.

    python benchmarks/time_to_accuracy.py fmnist          # ~6 min on 2 CPU cores
    python benchmarks/time_to_accuracy.py cifar10
    python benchmarks/time_to_accuracy.py fmnist --selectors ranked topk --score-resolution 10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import smartloader
from smartloader.datasets import ShuffledBatches, load_image_dir
from smartloader.demo import SmallCNN
from smartloader.progress_bar import ProgressBar

DATASETS = {  # name: (directory, default steps, width, score resolution)
    "fmnist": ("/work/shared/data/fashion-mnist", 1500, 16, 14),
    "cifar10": ("/work/shared/data/cifar-10", 1200, 16, 16),
}
HERE = os.path.dirname(os.path.abspath(__file__))


def run(method, data, args, seed):
    """Train once; return the accuracy curve [(step, wall_s, acc)] and the total wall time."""
    train_x, train_y, val_x, val_y = data
    torch.manual_seed(seed)  # the benchmark owns its process
    model = SmallCNN(train_x.shape[1], int(train_y.max()) + 1, width=args.width)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps = args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(  # 5% linear warm-up, cosine to zero
        opt, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    loader = ShuffledBatches(train_x, train_y, args.batch_size, seed=seed)
    if method != "uniform":
        cfg = {"seed": seed, "total_steps": steps, "pool_factor": args.pool_factor,
               "score_resolution": args.score_resolution or None,
               "phases": [{"name": "warmup", "fraction": 0.05, "selection": "uniform"},
                          {"name": "select", "selection": method},
                          {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}]}
        if method in ("ranked", "selective_backprop"):
            cfg["phases"][1]["beta"] = args.beta
        loader = smartloader.wrap(loader, model, cfg)

    def evaluate():
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(val_x), 1000):
                correct += int((model(val_x[i:i + 1000]).argmax(1) == val_y[i:i + 1000]).sum())
        model.train()
        return correct / len(val_x)

    curve = [(0, 0.0, evaluate())]
    bar = ProgressBar(steps, f"{method} s{seed}", enabled=not args.quiet)
    step, epoch, wall = 0, 0, 0.0
    t0 = time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % args.eval_every == 0 or step == steps:
                wall += time.perf_counter() - t0  # evaluation is not training time
                curve.append((step, wall, evaluate()))
                bar.update(step, f"acc {100 * curve[-1][2]:.2f}%")
                t0 = time.perf_counter()
            if step == steps:
                break
        epoch += 1
    bar.close()
    return {"method": method, "seed": seed, "curve": curve, "wall_s": wall,
            "final_acc": curve[-1][2]}


def acc_at(curve, budget):
    """Accuracy of the last evaluation at or before ``budget`` seconds (0 if none)."""
    best = None
    for _, w, a in curve:
        if w <= budget + 1e-9:
            best = a
    return best


def first_reach(curve, target):
    for s, w, a in curve:
        if a >= target - 1e-12:
            return s, w
    return None


def summarize(runs, methods, budgets):
    uni = [r for r in runs if r["method"] == "uniform"]
    target = statistics.median(r["final_acc"] for r in uni)
    uni_wall = statistics.median(r["wall_s"] for r in uni)
    uni_steps = uni[0]["curve"][-1][0]
    if not budgets:
        budgets = [round(f * uni_wall, 1) for f in (0.25, 0.5, 0.75, 1.0)]
    out = {"target_acc": target, "uniform_wall_s": uni_wall, "uniform_steps": uni_steps,
           "budgets_s": budgets, "methods": {}}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]
        reach = [first_reach(r["curve"], target) for r in rs]
        hit = [x for x in reach if x is not None]
        d = {"final_acc_median": statistics.median(r["final_acc"] for r in rs),
             "final_acc_per_seed": [r["final_acc"] for r in rs],
             "wall_s_median": statistics.median(r["wall_s"] for r in rs),
             "seeds_reaching_target": len(hit), "seeds": len(rs),
             "acc_at_budget": {str(b): statistics.median(
                 (acc_at(r["curve"], b) or 0.0) for r in rs) for b in budgets}}
        if len(hit) == len(rs):
            d["steps_to_target"] = statistics.median(s for s, _ in hit)
            d["wall_to_target_s"] = statistics.median(w for _, w in hit)
            d["wall_speedup"] = uni_wall / d["wall_to_target_s"] if d["wall_to_target_s"] else None
            d["step_speedup"] = uni_steps / d["steps_to_target"]
        out["methods"][m] = d
    return out


def markdown(name, args, summary, load):
    t = summary["target_acc"]
    lines = [f"### {name}: {args.steps} steps, batch {args.batch_size}, SmallCNN width "
             f"{args.width}, seeds {args.seeds}, pool_factor {args.pool_factor}, beta "
             f"{args.beta}, scoring at {args.score_resolution or 'full'} px",
             "", f"Target = uniform's median final accuracy: **{100 * t:.2f}%** in "
             f"{summary['uniform_wall_s']:.1f} s (median). Load: `{load}`.", "",
             "| method | final acc (median) | per seed | wall s (median) | steps to target "
             "| wall s to target | wall-clock speed-up | step speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for m, d in summary["methods"].items():
        per = " / ".join(f"{100 * a:.2f}" for a in d["final_acc_per_seed"])
        if "steps_to_target" in d:
            reach = (f"{d['steps_to_target']:.0f} | {d['wall_to_target_s']:.1f} | "
                     f"{d['wall_speedup']:.2f}x | {d['step_speedup']:.2f}x")
        else:
            reach = (f"not reached ({d['seeds_reaching_target']}/{d['seeds']} seeds) | - | "
                     f"- | -")
        lines.append(f"| {m} | {100 * d['final_acc_median']:.2f}% | {per} | "
                     f"{d['wall_s_median']:.1f} | {reach} |")
    lines += ["", "Accuracy (median over seeds) at equal wall-clock budgets:", "",
              "| method | " + " | ".join(f"{b:g} s" for b in summary["budgets_s"]) + " |",
              "|---|" + "---|" * len(summary["budgets_s"])]
    for m, d in summary["methods"].items():
        lines.append(f"| {m} | " + " | ".join(f"{100 * a:.2f}%" for a in
                                               d["acc_at_budget"].values()) + " |")
    return "\n".join(lines) + "\n"


def plot(runs, methods, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = dict(zip(methods, ["tab:gray", "tab:blue", "tab:orange", "tab:green"]))
    for r in runs:
        c = r["curve"][1:]
        ax.plot([w for _, w, _ in c], [100 * a for _, _, a in c], color=colors[r["method"]],
                alpha=0.8, label=r["method"] if r["seed"] == runs[0]["seed"] else None)
    ax.set_xlabel("training wall time (s, evaluation excluded)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    lo = min(100 * r["curve"][-1][2] for r in runs)
    ax.set_ylim(lo - 10, None)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--data", help="dataset directory (default: /work/shared/data/...)")
    p.add_argument("--steps", type=int, help="training steps per run (both methods)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--selectors", nargs="+", default=["ranked"],
                   choices=["ranked", "topk", "selective_backprop"])
    p.add_argument("--score-resolution", type=int, help="px of the scoring pass; 0 = full")
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--budget", type=float, nargs="+",
                   help="wall-clock budgets (s) for the equal-time table (default: 25/50/75/100%% "
                        "of uniform's median wall time)")
    p.add_argument("--width", type=int, help="SmallCNN width")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default steps/15)")
    p.add_argument("--val", type=int, default=5000, help="validation images used (fixed subset)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    directory, steps, width, res = DATASETS[args.dataset]
    args.steps = args.steps or steps
    args.width = args.width or width
    args.score_resolution = res if args.score_resolution is None else args.score_resolution
    args.eval_every = args.eval_every or max(1, args.steps // 15)
    if args.threads:
        torch.set_num_threads(args.threads)
    tx, ty, vx, vy = load_image_dir(args.data or directory)
    data = (tx, ty, vx[:args.val], vy[:args.val])
    methods = ["uniform"] + args.selectors
    load0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{args.dataset}: {len(tx)} train {tuple(tx.shape[1:])}, {len(data[2])} val; "
          f"threads {torch.get_num_threads()}; {load0}", flush=True)
    runs = []
    for seed in args.seeds:  # interleave methods per seed
        for m in methods:
            runs.append(run(m, data, args, seed))
            print(f"  seed {seed} {m:>18}: {100 * runs[-1]['final_acc']:.2f}% in "
                  f"{runs[-1]['wall_s']:.1f} s", flush=True)
    load1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    summary = summarize(runs, methods, args.budget)
    load = f"start: {load0.split('load average:')[-1].strip()}; end: " \
           f"{load1.split('load average:')[-1].strip()} (1/5/15-min load, 2 cores)"
    stem = os.path.join(HERE, "results", f"time_to_accuracy_{args.dataset}{args.tag}")
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    with open(stem + ".json", "w") as fh:
        json.dump({"args": vars(args), "load": load, "summary": summary, "runs": runs}, fh,
                  indent=1)
    md = markdown(args.dataset, args, summary, load)
    with open(stem + ".md", "w") as fh:
        fh.write(md)
    plot(runs, methods, stem + ".png",
         f"{args.dataset}: {args.steps} steps, width {args.width}, score {args.score_resolution} px, "
         f"pool x{args.pool_factor}, beta {args.beta}")
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

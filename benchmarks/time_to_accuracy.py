"""Time to accuracy: uniform vs SmartLoader on the same model and schedule.

For each seed the methods run back to back (interleaved), so machine load hits both alike.
Every ``--eval-every`` steps the model is evaluated on a fixed validation set; evaluation time
is excluded from the wall clock. Reported:

- uniform's final accuracy (median over seeds) = the *target*;
- for each selection method, the steps and wall time at which it first reaches the target
  (median over seeds; "not reached" when a seed never does), and the wall-clock ratio;
- accuracy at equal wall-clock budgets (last evaluation at or before the budget);
- a PNG of accuracy vs wall time, JSON and a markdown table under ``benchmarks/results/``.

    python benchmarks/time_to_accuracy.py fmnist --data path/to/fashion-mnist   # ~6 min, 2 cores
    python benchmarks/time_to_accuracy.py cifar10 --data path/to/cifar-10
    python benchmarks/time_to_accuracy.py fmnist --data path/to/fashion-mnist \
        --selectors ranked topk --score-resolution 10

``--data DIR`` is required: MNIST/Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``)
or the CIFAR-10 binary batches (``data_batch_1..5.bin``); nothing is downloaded.

Budget mode (``--fractions``) instead trains every method to completion at several step
budgets, each with the whole schedule compressed to it, and compares *final* accuracy against
wall time; the target is uniform at 1.0, and SmartLoader methods may run longer budgets (>1)
that still cost less wall time. The results in docs/results.md:

    python benchmarks/time_to_accuracy.py cifar10 --data path/to/cifar-10 --steps 1500 \
        --fractions 0.8 1.0 1.1 1.2 \
        --selectors schedule ranked --resolution super_progressive:16:32:8 --scorer history \
        --threads 1 --tag _budget                                  # ~20 min
    python benchmarks/time_to_accuracy.py --from-json benchmarks/results/X.json  # re-tabulate
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
from tqdm import tqdm

import smartloader
from smartloader.tools.datasets import ShuffledBatches, load_image_dir
from smartloader.tools.demo import SmallCNN

DATASETS = {  # name: (default steps, width, score resolution)
    "fmnist": (1500, 16, 14),
    "mnist": (1500, 16, 14),
    "cifar10": (1200, 16, 16),
}
HERE = os.path.dirname(os.path.abspath(__file__))


def _resolution_spec(text):
    kind, *nums = text.split(":")
    if kind not in ("progressive", "super_progressive") or len(nums) != 3:
        raise argparse.ArgumentTypeError(f"expected progressive|super_progressive:MIN:MAX:INC, "
                                         f"got {text!r}")
    return (kind, *map(int, nums))


def run(method, data, args, seed, steps=None):
    """Train once; return the accuracy curve [(step, wall_s, acc)] and the total wall time.

    ``steps`` (default ``args.steps``) sets the run's length; the LR schedule and the phase
    fractions scale with it, so a shorter budget is the same schedule shape, compressed.
    """
    train_x, train_y, val_x, val_y = data
    torch.manual_seed(seed)  # the benchmark owns its process
    model = SmallCNN(train_x.shape[1], int(train_y.max()) + 1, width=args.width)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps = steps or args.steps
    sched = torch.optim.lr_scheduler.LambdaLR(  # 5% linear warm-up, cosine to zero
        opt, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    loader = ShuffledBatches(train_x, train_y, args.batch_size, seed=seed)
    if method != "uniform":
        cfg = {"seed": seed, "total_steps": steps, "pool_factor": args.pool_factor,
               "score_resolution": args.score_resolution or None,
               "phases": [{"name": "warmup", "fraction": 0.05, "selection": "uniform"},
                          {"name": "select", "selection": method},
                          {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}]}
        if method == "schedule":  # SmartLoader with no selection: only the resolution schedule
            cfg["phases"] = [{"name": "all", "selection": "uniform"}]
        if args.resolution:
            kind, lo, hi, inc = args.resolution
            cfg["resolution"] = {"type": kind, "min": lo, "max": hi, "increment": inc}
            if kind == "super_progressive":
                cfg["resolution"]["warmup_fraction"] = 0.05  # = the LR warm-up
            if args.score_resolution:  # scoring keeps its ratio to the training resolution
                cfg["score_scale"] = args.score_resolution / train_x.shape[-1]
                cfg["score_resolution"] = None
        if method in ("ranked", "selective_backprop"):
            cfg["phases"][1]["beta"] = args.beta
        if args.scorer == "history" and method != "schedule":  # the step's own losses
            cfg.update(index_key=2, scorer={"type": "history", "default": "max"})
        loader = smartloader.wrap(loader, model, cfg)
    report = method not in ("uniform", "schedule") and args.scorer == "history"

    def evaluate():
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(val_x), 1000):
                correct += int((model(val_x[i:i + 1000]).argmax(1) == val_y[i:i + 1000]).sum())
        model.train()
        return correct / len(val_x)

    eval_every = max(1, round(args.eval_every * steps / args.steps))
    curve = [(0, 0.0, evaluate())]
    bar = tqdm(total=steps, desc=f"{method} s{seed}", unit="step", disable=args.quiet,
               file=sys.stderr)
    step, epoch, wall = 0, 0, 0.0
    t0 = time.perf_counter()
    while step < steps:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            losses = F.cross_entropy(model(x), y, reduction="none")
            opt.zero_grad(set_to_none=True)
            losses.mean().backward()
            if report:
                loader.report_losses(losses.detach())
            opt.step()
            sched.step()
            step += 1
            if step % eval_every == 0 or step == steps:
                wall += time.perf_counter() - t0  # evaluation is not training time
                curve.append((step, wall, evaluate()))
                bar.set_postfix_str(f"acc {100 * curve[-1][2]:.2f}%", refresh=False)
                bar.update(step - bar.n)
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


def summarize_budgets(runs, methods, fractions):
    """Each method trained to completion at several step budgets (same schedule shape).

    Target = uniform's median final accuracy at the full budget (fraction 1.0). A method's
    time to target is the median wall time of its *smallest* budget whose median final
    accuracy reaches the target (conservative by up to one budget step); ``interp`` also
    interpolates wall time linearly in accuracy between the two budgets around the target.
    Paired per seed: the smallest budget reaching *that seed's* uniform accuracy, and the
    ratio of that seed's uniform wall time to it.
    """
    full = 1.0
    cells = {}
    for m in methods:
        for f in fractions:
            rs = [r for r in runs if r["method"] == m and r["fraction"] == f]
            if not rs:  # uniform is not run beyond its own full budget
                continue
            cells[m, f] = {"steps": rs[0]["curve"][-1][0],
                           "acc_median": statistics.median(r["final_acc"] for r in rs),
                           "acc_per_seed": [r["final_acc"] for r in rs],
                           "wall_s_per_seed": [r["wall_s"] for r in rs],
                           "wall_s_median": statistics.median(r["wall_s"] for r in rs)}
    target = cells["uniform", full]["acc_median"]
    uni_wall = cells["uniform", full]["wall_s_median"]
    out = {"target_acc": target, "uniform_wall_s": uni_wall, "fractions": sorted(fractions),
           "methods": {}}
    for m in methods:
        own = [f for f in sorted(fractions) if (m, f) in cells]
        d = {"budgets": {str(f): cells[m, f] for f in own}}
        hit = [f for f in own if cells[m, f]["acc_median"] >= target - 1e-12]
        if hit:
            c = cells[m, hit[0]]
            d.update(fraction_to_target=hit[0], steps_to_target=c["steps"],
                     wall_to_target_s=c["wall_s_median"], wall_speedup=uni_wall / c["wall_s_median"],
                     step_speedup=cells["uniform", full]["steps"] / c["steps"])
            i = own.index(hit[0])
            if i > 0:  # interpolate between the budget below the target and the one above
                lo, hi = cells[m, own[i - 1]], c
                t = (target - lo["acc_median"]) / (hi["acc_median"] - lo["acc_median"])
                w = lo["wall_s_median"] + t * (hi["wall_s_median"] - lo["wall_s_median"])
                d.update(wall_to_target_interp_s=w, wall_speedup_interp=uni_wall / w)
        d["paired"] = _paired(runs, m, own)
        out["methods"][m] = d
    return out


def _paired(runs, method, fractions):
    """Per seed: smallest budget whose final accuracy reaches that seed's uniform accuracy at
    1.0, and uniform's wall time over that run's (``None``: no budget reached it)."""
    out = {}
    for u in (r for r in runs if r["method"] == "uniform" and r["fraction"] == 1.0):
        mine = {r["fraction"]: r for r in runs
                if r["method"] == method and r["seed"] == u["seed"]}
        hit = next((mine[f] for f in fractions if f in mine
                    and mine[f]["final_acc"] >= u["final_acc"] - 1e-12), None)
        out[str(u["seed"])] = None if hit is None else {
            "fraction": hit["fraction"], "wall_s": hit["wall_s"],
            "speedup": u["wall_s"] / hit["wall_s"]}
    return out


def markdown_budgets(name, args, summary, load):
    t = summary["target_acc"]
    fr = summary["fractions"]
    lines = [f"### {name}: budgets {', '.join(f'{f:g}' for f in fr)} x {args.steps} steps, batch "
             f"{args.batch_size}, SmallCNN width {args.width}, seeds {args.seeds}, pool_factor "
             f"{args.pool_factor}, beta {args.beta}, scorer {args.scorer}"
             + (f" at {args.score_resolution or 'full'} px" if args.scorer == "low_res" else "")
             + (f", resolution {':'.join(map(str, args.resolution))} for SmartLoader methods"
                if args.resolution else ""),
             "", "Each cell is one complete training (5% warm-up, cosine to zero) at that step "
             "budget; median over seeds: final accuracy / wall seconds (evaluation excluded).", "",
             f"Target = uniform's median final accuracy at the full budget: **{100 * t:.2f}%** "
             f"in {summary['uniform_wall_s']:.1f} s. Load: `{load}`.", "",
             "| method | " + " | ".join(f"{f:g} x" for f in fr) + " | time to target | "
             "wall-clock speed-up | interpolated | step speed-up | paired per seed |",
             "|---|" + "---|" * (len(fr) + 5)]
    for m, d in summary["methods"].items():
        cells = [f"{100 * c['acc_median']:.2f}% / {c['wall_s_median']:.1f} s"
                 if (c := d["budgets"].get(str(f))) else "-" for f in fr]
        interp = (f"{d['wall_speedup_interp']:.2f}x" if "wall_speedup_interp" in d else "-")
        if "wall_speedup" in d:
            tail = (f"{d['wall_to_target_s']:.1f} s ({d['steps_to_target']} steps) | "
                    f"**{d['wall_speedup']:.2f}x** | {interp} | {d['step_speedup']:.2f}x")
        else:
            tail = "not reached | - | - | -"
        paired = " / ".join("no" if v is None else f"{v['speedup']:.2f}x"
                            for v in d["paired"].values())
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {tail} | {paired} |")
    lines += ["", "Paired per seed: uniform's wall time at 1.0 over the wall time of the "
              "method's smallest budget that reaches *that seed's* uniform accuracy (\"no\": "
              "none did). Interpolated: wall time interpolated linearly in accuracy between the "
              "budgets just below and at the target.",
              "", "Per seed (final accuracy at each budget):", "",
              "| method | budget | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
              "|---|---|" + "---|" * len(args.seeds)]
    for m, d in summary["methods"].items():
        for f, c in d["budgets"].items():
            lines.append(f"| {m} | {float(f):g} x | " +
                         " | ".join(f"{100 * a:.2f}% ({w:.1f} s)" for a, w in
                                    zip(c["acc_per_seed"], c["wall_s_per_seed"])) + " |")
    return "\n".join(lines) + "\n"


def plot_budgets(summary, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (m, d), c in zip(summary["methods"].items(), ["tab:gray", "tab:blue", "tab:orange",
                                                       "tab:green"]):
        cs = list(d["budgets"].values())
        ax.plot([x["wall_s_median"] for x in cs], [100 * x["acc_median"] for x in cs], "o-",
                color=c, label=m)
    ax.axhline(100 * summary["target_acc"], color="k", ls=":", lw=1, label="target")
    ax.set_xlabel("wall time of the whole run (s, median over seeds)")
    ax.set_ylabel("final validation accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(name, args, summary, load):
    t = summary["target_acc"]
    lines = [f"### {name}: {args.steps} steps, batch {args.batch_size}, SmallCNN width "
             f"{args.width}, seeds {args.seeds}, pool_factor {args.pool_factor}, beta "
             f"{args.beta}, scoring at {args.score_resolution or 'full'} px"
             + (f", resolution {':'.join(map(str, args.resolution))} for SmartLoader methods"
                if args.resolution else ""),
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


def _save(stem, args, load, summary, runs, md):
    """Every run and the summary as JSON, the tables as markdown."""
    with open(stem + ".json", "w") as fh:
        json.dump({"args": vars(args), "load": load, "summary": summary, "runs": runs}, fh,
                  indent=1)
    with open(stem + ".md", "w") as fh:
        fh.write(md)


def _budget_outputs(stem, args, runs, methods, load):
    summary = summarize_budgets(runs, methods, args.fractions)
    md = markdown_budgets(args.dataset, args, summary, load)
    _save(stem, args, load, summary, runs, md)
    plot_budgets(summary, stem + ".png", f"{args.dataset}: budgets of {args.steps} steps, "
                 f"scorer {args.scorer}, pool x{args.pool_factor}, beta {args.beta}")
    print("\n" + md)
    return 0


def _remake(path):
    with open(path) as fh:
        saved = json.load(fh)
    args = argparse.Namespace(**saved["args"])
    methods = ["uniform"] + args.selectors
    return _budget_outputs(path[:-len(".json")], args, saved["runs"], methods, saved["load"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", choices=sorted(DATASETS))
    p.add_argument("--data", metavar="DIR",
                   help="dataset directory (required to train): IDX files or CIFAR-10 binary")
    p.add_argument("--steps", type=int, help="training steps per run (both methods)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--selectors", nargs="+", default=["ranked"],
                   choices=["ranked", "topk", "selective_backprop", "schedule"],
                   help="methods besides uniform; 'schedule' = SmartLoader without selection "
                        "(only --resolution), to separate the two effects")
    p.add_argument("--resolution", type=_resolution_spec, metavar="TYPE:MIN:MAX:INC",
                   help="training-resolution schedule for the SmartLoader methods, e.g. "
                        "progressive:16:32:8 or super_progressive:16:32:8 (uniform: full size)")
    p.add_argument("--score-resolution", type=int, help="px of the scoring pass; 0 = full")
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--scorer", choices=["low_res", "history"], default="low_res",
                   help="low_res: no-grad forward of the pool; history: the training step's own "
                        "losses reported back (loader.report_losses), no extra forward")
    p.add_argument("--fractions", type=float, nargs="+",
                   help="budget mode: train every method to completion at these fractions of "
                        "--steps (e.g. 0.8 1.0 1.2; must include 1.0; uniform runs only up to "
                        "1.0) and compare final accuracy vs wall time")
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
    p.add_argument("--from-json", metavar="PATH",
                   help="re-make the tables and plot of a budget-mode result JSON (no training)")
    args = p.parse_args(argv)
    if args.from_json:
        return _remake(args.from_json)
    if args.dataset is None:
        p.error("give a dataset (or --from-json PATH)")
    if args.fractions and 1.0 not in args.fractions:
        p.error("--fractions must include 1.0 (uniform's full budget sets the target)")
    if args.data is None:
        p.error(f"--data DIR is required: the {args.dataset} directory (MNIST/Fashion-MNIST "
                "IDX files or CIFAR-10 binary batches)")
    steps, width, res = DATASETS[args.dataset]
    args.steps = args.steps or steps
    args.width = args.width or width
    args.score_resolution = res if args.score_resolution is None else args.score_resolution
    args.eval_every = args.eval_every or max(1, args.steps // 15)
    if args.threads:
        torch.set_num_threads(args.threads)
    tx, ty, vx, vy = load_image_dir(args.data)
    data = (tx, ty, vx[:args.val], vy[:args.val])
    methods = ["uniform"] + args.selectors
    load0 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{args.dataset}: {len(tx)} train {tuple(tx.shape[1:])}, {len(data[2])} val; "
          f"threads {torch.get_num_threads()}; {load0}", flush=True)
    runs = []
    for seed in args.seeds:  # interleave methods (and budgets) per seed
        for f in args.fractions or [1.0]:
            for m in methods:
                if m == "uniform" and f > 1.0:  # the target is uniform at 1.0
                    continue
                runs.append(run(m, data, args, seed, max(1, round(f * args.steps))))
                runs[-1]["fraction"] = f
                print(f"  seed {seed} x{f:g} {m:>18}: {100 * runs[-1]['final_acc']:.2f}% in "
                      f"{runs[-1]['wall_s']:.1f} s", flush=True)
    load1 = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    load = f"start: {load0.split('load average:')[-1].strip()}; end: " \
           f"{load1.split('load average:')[-1].strip()} (1/5/15-min load, 2 cores)"
    stem = os.path.join(HERE, "results", f"time_to_accuracy_{args.dataset}{args.tag}")
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    if args.fractions:
        return _budget_outputs(stem, args, runs, methods, load)
    summary = summarize(runs, methods, args.budget)
    md = markdown(args.dataset, args, summary, load)
    _save(stem, args, load, summary, runs, md)
    plot(runs, methods, stem + ".png",
         f"{args.dataset}: {args.steps} steps, width {args.width}, score {args.score_resolution} px, "
         f"pool x{args.pool_factor}, beta {args.beta}")
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

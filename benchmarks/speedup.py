"""Speed-up at equal accuracy: SmartLoader against uniform training and the peers, one run.

Every method trains a small ResNet (ResNet-8) to completion at several budgets (fractions of
the uniform run's steps, the LR schedule compressed to each), methods interleaved per seed so
machine drift hits all alike. Evaluation is excluded from the wall clock. Methods:

- ``uniform``: every epoch the whole (sub)set, shuffled; at fraction f it trains f x the
  epochs (the honest baseline: uniform with its schedule compressed).
- ``rs2``: Repeated Sampling of Random Subsets (RS2, without replacement): every one of the
  full run's epochs trains on the next f x N samples of a running random permutation.
- ``infobatch``: the InfoBatch rule: each epoch, samples whose last loss is below the mean are
  dropped with probability r = 0.5 and the kept ones' losses scaled by 1/(1 - r); the last
  12.5% of epochs use the full data. At fraction f it runs f x the epochs (its own pruning
  cuts the steps further; the steps it ran are recorded).
- ``selective_backprop``: SmartLoader's Selective-Backprop rule (loss percentile ** beta)
  on a fresh full-resolution forward of the pool, as published.
- ``topk``: greedy top-k of the history scorer's losses.
- ``smartloader``: the ``combined`` preset (ranked selection on the history scorer,
  a progressive resolution schedule and a rising augmentation magnitude).
- ``selection``: ranked selection on the history scorer alone (no schedules);
  ``schedules``: the preset's schedules alone (no selection).
- ``learnability``: ranked selection on last loss minus best past loss (history).

Results go to ``benchmarks/results/speedup_<dataset><tag>.json`` as
``{"runs": [{"method", "seed", "fraction", "steps", "wall_s", "final_acc"}, ...],
"config": {...}}``, rewritten after every run; ``--report`` tabulates a JSON (the target is
uniform's median final accuracy at fraction 1.0).

    python benchmarks/speedup.py cifar10 --data path/to/cifar-10 --train-subset 3200 \
        --epochs 32 --seeds 0 1 2 3 4 --threads 1
    python benchmarks/speedup.py --report benchmarks/results/speedup_cifar10.json
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
from smartloader.tools.datasets import ShuffledBatches, load_image_dir
from smartloader.tools.demo import evaluate
from smartloader.tools.models import SmallResNet, batch_augment

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("uniform", "rs2", "infobatch", "selective_backprop", "topk", "smartloader",
           "selection", "schedules", "learnability")
DEFAULT_FRACTIONS = {  # method: budgets it runs at (fractions of the uniform run's steps)
    "uniform": (0.7, 0.85, 1.0), "rs2": (0.7, 0.85), "infobatch": (1.0,),
    "selective_backprop": (0.85,), "topk": (0.85,), "smartloader": (0.85,),
    "selection": (0.7, 0.85), "schedules": (0.85,), "learnability": (0.85,),
}
DATASETS = {"cifar10": {"pad": 4, "flip": True}, "fmnist": {"pad": 2, "flip": True},
            "mnist": {"pad": 2, "flip": False}}


# -- samplers: what each epoch trains on ----------------------------------------------------
class Uniform(ShuffledBatches):
    """The whole set each epoch, reshuffled from (seed, epoch). Yields (x, y, index)."""

    def __init__(self, x, y, batch_size, seed):
        super().__init__(x, y, batch_size, seed=seed)
        self.bs = batch_size


class RS2(Uniform):
    """RS2 without replacement: each epoch the next ``fraction`` x N samples of a running
    permutation (a new permutation when one runs out)."""

    def __init__(self, x, y, batch_size, seed, fraction):
        super().__init__(x, y, batch_size, seed)
        self.per_epoch = max(batch_size, round(fraction * len(x)))
        self._perm, self._pos, self._round = None, 0, 0

    def _next(self, k):
        out = []
        while k > 0:
            if self._perm is None or self._pos == len(self._perm):
                g = torch.Generator().manual_seed(self.seed * 7919 + self._round)
                self._perm = torch.randperm(len(self.x), generator=g)
                self._pos, self._round = 0, self._round + 1
            take = self._perm[self._pos:self._pos + k]
            self._pos += len(take)
            k -= len(take)
            out.append(take)
        return torch.cat(out)

    def __iter__(self):
        idx = self._next(self.per_epoch)
        for b in range(0, len(idx), self.bs):
            i = idx[b:b + self.bs]
            yield self.x[i], self.y[i], i


class InfoBatch(Uniform):
    """The InfoBatch rule (ICLR 2024): prune below-mean-loss samples with probability ``r``,
    rescale the kept ones by 1/(1 - r); full data once ``epoch >= delta * epochs``. Yields
    (x, y, index, weight); :meth:`observe` records the training losses."""

    def __init__(self, x, y, batch_size, seed, epochs, r=0.5, delta=0.875):
        super().__init__(x, y, batch_size, seed)
        self.epochs, self.r, self.delta = epochs, r, delta
        self.loss = torch.full((len(x),), float("nan"))

    def observe(self, idx, losses):
        self.loss[idx] = losses.detach().float()

    def __iter__(self):
        idx = self.order()
        weight = torch.ones(len(self.x))
        known = ~torch.isnan(self.loss)
        if self.epoch < self.delta * self.epochs and bool(known.any()):
            mean = self.loss[known].mean()
            low = known & (self.loss < mean)
            g = torch.Generator().manual_seed(self.seed * 31 + self.epoch)
            drop = low & (torch.rand(len(self.x), generator=g) < self.r)
            weight[low] = 1.0 / (1.0 - self.r)
            idx = idx[~drop[idx]]
        for b in range(0, len(idx), self.bs):
            i = idx[b:b + self.bs]
            yield self.x[i], self.y[i], i, weight[i]


# -- one training run ------------------------------------------------------------------------
def smartloader_config(method, args, steps, seed, side):
    """The SmartLoader config of a SmartLoader-based method at ``steps`` total steps."""
    sel = {"selective_backprop": "selective_backprop", "topk": "topk"}.get(method, "ranked")
    if method in ("smartloader", "schedules"):
        cfg = smartloader.preset("combined", side=side, index_key=2)
    else:
        cfg = {"phases": [{"name": "warmup", "fraction": 0.05, "selection": "uniform"},
                          {"name": "select", "selection": sel},
                          {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}],
               "index_key": 2, "scorer": {"type": "history", "default": "max"}}
    if method == "schedules":
        cfg["phases"] = [{"name": "all", "selection": "uniform"}]
    if method == "selective_backprop":  # as published: a fresh forward of the whole pool
        cfg.pop("scorer")
        cfg.pop("index_key")
        cfg["score_resolution"] = None
    if method == "learnability":
        cfg["scorer"] = {"type": "learnability", "learner": "history", "reference": "best"}
    cfg.update(seed=seed, total_steps=steps, pool_factor=args.pool_factor)
    return cfg


def run(method, data, args, seed, fraction):
    train_x, train_y, val_x, val_y = data
    full_epochs = args.epochs
    per_epoch = -(-len(train_x) // args.batch_size)
    steps = max(1, round(fraction * full_epochs * per_epoch))
    torch.manual_seed(seed)
    model = SmallResNet(train_x.shape[1], int(train_y.max()) + 1, width=args.width)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    weighted = False
    if method == "rs2":
        loader = RS2(train_x, train_y, args.batch_size, seed, fraction)
    elif method == "infobatch":
        epochs = max(1, round(fraction * full_epochs))
        loader = InfoBatch(train_x, train_y, args.batch_size, seed, epochs)
        steps = None   # runs its epochs; the pruning decides the steps
        weighted = True
    else:
        loader = Uniform(train_x, train_y, args.batch_size, seed)
    cost = {"own_s": 0.0, "score_s": 0.0, "scorer_train_s": 0.0}

    def account(st):   # SmartLoader's own time vs its scoring computation, per step
        cost["own_s"] += st.pool_time_s + st.select_time_s
        cost["score_s"] += st.score_time_s
        cost["scorer_train_s"] += st.scorer_train_time_s

    if method not in ("uniform", "rs2", "infobatch"):
        loader = smartloader.wrap(loader, model, smartloader_config(
            method, args, steps, seed, train_x.shape[-1]), callback=account)
    history = method in ("smartloader", "selection", "topk", "learnability", "schedules")
    if steps is None:   # InfoBatch: the LR schedule spans the steps it will run, estimated
        steps_plan = _infobatch_steps(loader, per_epoch)
    else:
        steps_plan = steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (
        0.05 * steps_plan)) * 0.5 * (1 + math.cos(math.pi * min(s, steps_plan) / steps_plan)))
    aug = DATASETS[args.dataset]
    g = torch.Generator().manual_seed(seed + 12345)
    magnitude = getattr(loader, "magnitude", None)
    step, epoch = 0, 0
    t0 = time.perf_counter()
    while steps is None or step < steps:
        if steps is None and epoch >= loader.epochs:
            break
        loader.set_epoch(epoch)
        for batch in loader:
            x, y = batch[0], batch[1]
            m = magnitude.get() if magnitude is not None else 5.0
            pad = round(aug["pad"] * (m / 5.0) * x.shape[-1] / train_x.shape[-1])
            losses = F.cross_entropy(model(batch_augment(x, g, pad, aug["flip"])), y,
                                     reduction="none")
            loss = (losses * batch[3]).mean() if weighted else losses.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if history:
                loader.report_losses(losses.detach())
            if weighted:
                loader.observe(batch[2], losses.detach())
            opt.step()
            sched.step()
            step += 1
            if steps is not None and step == steps:
                break
        epoch += 1
    wall = time.perf_counter() - t0
    acc = evaluate(model, val_x, val_y)
    out = {"method": method, "seed": seed, "fraction": fraction, "steps": step,
           "wall_s": round(wall, 3), "final_acc": acc}
    if method not in ("uniform", "rs2", "infobatch"):
        out.update({k: round(v, 3) for k, v in cost.items()})
    return out


def _infobatch_steps(loader, per_epoch):
    """InfoBatch's expected steps: full epochs in the last (1 - delta), about (1 - r/2) of
    the data before (half the samples sit below the mean)."""
    pruned = math.ceil(loader.delta * loader.epochs)
    keep = 1.0 - loader.r / 2.0
    return max(1, round(pruned * per_epoch * keep + (loader.epochs - pruned) * per_epoch))


# -- tables ----------------------------------------------------------------------------------
def summarize(runs):
    """Per method and budget: median final accuracy and wall; the target (uniform at 1.0);
    each method's time to target (smallest budget whose median reaches it, and interpolated
    linearly in accuracy between the budgets around it) and paired per-seed speed-ups."""
    by = {}
    for r in runs:
        by.setdefault(r["method"], {}).setdefault(r["fraction"], []).append(r)
    uni = by.get("uniform", {}).get(1.0)
    if not uni:
        return None
    target = statistics.median(r["final_acc"] for r in uni)
    uni_wall = statistics.median(r["wall_s"] for r in uni)
    out = {"target_acc": target, "uniform_wall_s": uni_wall, "methods": {}}
    for m, cells in by.items():
        fr = sorted(cells)
        rows = {f: {"acc": statistics.median(r["final_acc"] for r in cells[f]),
                    "wall_s": statistics.median(r["wall_s"] for r in cells[f]),
                    "steps": statistics.median(r["steps"] for r in cells[f]),
                    "seeds": len(cells[f])} for f in fr}
        d = {"budgets": {str(f): v for f, v in rows.items()}}
        hit = [f for f in fr if rows[f]["acc"] >= target - 1e-12]
        if hit:
            c = rows[hit[0]]
            d.update(fraction_to_target=hit[0], wall_to_target_s=c["wall_s"],
                     speedup=uni_wall / c["wall_s"])
            i = fr.index(hit[0])
            if i > 0:
                lo = rows[fr[i - 1]]
                t = (target - lo["acc"]) / (c["acc"] - lo["acc"])
                w = lo["wall_s"] + t * (c["wall_s"] - lo["wall_s"])
                d.update(speedup_interp=uni_wall / w)
        else:
            top = rows[fr[-1]]
            d["short_of_target_pt"] = 100 * (target - top["acc"])
        out["methods"][m] = d
    return out


def per_step_cost(runs, method):
    """Median over seeds of the method's wall time per step over uniform's (at 1.0, same
    seed): what a step costs, apart from how many steps it needs."""
    uni = {r["seed"]: r["wall_s"] / r["steps"] for r in runs
           if r["method"] == "uniform" and r["fraction"] == 1.0}
    ratios = [r["wall_s"] / r["steps"] / uni[r["seed"]] for r in runs
              if r["method"] == method and r["seed"] in uni]
    return statistics.median(ratios) if ratios else None


def paired(runs, method):
    """Per seed: uniform's wall time at 1.0 over the wall time of the method's smallest
    budget reaching *that seed's* uniform accuracy (None: no budget did)."""
    out = {}
    for u in sorted((r for r in runs if r["method"] == "uniform" and r["fraction"] == 1.0),
                    key=lambda r: r["seed"]):
        mine = sorted((r for r in runs if r["method"] == method and r["seed"] == u["seed"]),
                      key=lambda r: r["fraction"])
        if not mine:      # this seed has not run the method (yet)
            continue
        hit = next((r for r in mine if r["final_acc"] >= u["final_acc"] - 1e-12), None)
        out[u["seed"]] = None if hit is None else u["wall_s"] / hit["wall_s"]
    return out


def markdown(paths, title, plot_path=None):
    """The results section of result JSONs (a main run and follow-ups at the same config):
    budgets table, speed-ups, per-seed numbers."""
    runs, cfg, later = [], None, []
    for path in paths:
        with open(path) as fh:
            saved = json.load(fh)
        if cfg is None:
            cfg = saved["config"]
        else:
            keep = ("dataset", "epochs", "train_subset", "width", "batch_size", "lr", "val")
            differ = [k for k in keep if saved["config"][k] != cfg[k]]
            if differ:
                raise ValueError(f"{path}: config differs from {paths[0]} in {differ}")
            cells = sorted({f"{r['method']} {r['fraction']:g}x" for r in saved["runs"]})
            later.append(f"{os.path.basename(path)} ({', '.join(cells)})")
        runs += saved["runs"]
        for f in saved["config"].get("followups", []):   # merged into this file already
            later.append(f"{', '.join(f['methods'])} (seeds {', '.join(map(str, f['seeds']))}; "
                         f"load {f['load_start']} to {f['load_end']})")
    s = summarize(runs)
    methods = list(dict.fromkeys(r["method"] for r in runs))
    fr = sorted({r["fraction"] for r in runs})
    seeds = sorted({r["seed"] for r in runs})
    lines = [f"### {title}", "",
             f"{cfg['model']} width {cfg['width']}, {cfg['train_images']} training images "
             f"({cfg['dataset']}), {cfg['epochs']} epochs at budget 1.0 = "
             f"{cfg['epochs'] * cfg['steps_per_epoch']} steps of batch {cfg['batch_size']}; "
             f"{cfg['lr_schedule']}; {cfg['optimizer']}; flip + translate "
             f"{cfg['augment']['pad']} px; {len(seeds)} seeds ({', '.join(map(str, seeds))}), "
             f"methods interleaved per seed, 1 torch thread per process, two processes on 2 "
             f"cores. Load average at start {cfg.get('load_start')}, at the last run "
             f"{cfg.get('load_end')}."
             + (f" Run after the main run, in the same regime and on the same seeds (not "
                f"interleaved with uniform): {'; '.join(later)}." if later else ""), "",
             f"Target = uniform's median final accuracy at budget 1.0: "
             f"**{100 * s['target_acc']:.2f}%** in {s['uniform_wall_s']:.1f} s (median). "
             f"Cells: median final accuracy / median wall seconds of the whole run "
             f"(evaluation excluded).", "",
             "| method | " + " | ".join(f"{f:g}x" for f in fr) + " | per-step cost | "
             "speed-up to target | interpolated | paired per seed |",
             "|---|" + "---|" * (len(fr) + 4)]
    for m in methods:
        d = s["methods"][m]
        cells = [f"{100 * c['acc']:.2f}% / {c['wall_s']:.0f} s"
                 if (c := d["budgets"].get(str(f))) else "-" for f in fr]
        cost = per_step_cost(runs, m)
        sp = (f"**{d['speedup']:.2f}x** (at {d['fraction_to_target']:g}x)" if "speedup" in d
              else f"not reached ({d['short_of_target_pt']:+.2f} pt short)".replace("+", ""))
        interp = f"{d['speedup_interp']:.2f}x" if "speedup_interp" in d else "-"
        pairs = " / ".join("no" if v is None else f"{v:.2f}x" for v in paired(runs, m).values())
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {cost:.2f}x | {sp} | {interp} | "
                     f"{pairs} |")
    lines += ["", "Per seed (final accuracy, wall seconds):", "",
              "| method | budget | " + " | ".join(f"seed {x}" for x in seeds) + " |",
              "|---|---|" + "---|" * len(seeds)]
    for m in methods:
        for f in fr:
            rs = {r["seed"]: r for r in runs if r["method"] == m and r["fraction"] == f}
            if rs:
                lines.append(f"| {m} | {f:g}x | " + " | ".join(
                    f"{100 * rs[x]['final_acc']:.2f}% ({rs[x]['wall_s']:.0f} s, "
                    f"{rs[x]['steps']} steps)" if x in rs else "-" for x in seeds) + " |")
    own = [r["own_s"] / r["wall_s"] for r in runs if "own_s" in r]
    if own:
        lines += ["", f"SmartLoader's own cost (pooling, ranking, drawing, subsetting; all but "
                      f"the scoring computation): median {100 * statistics.median(own):.2f}% of "
                      f"the run's wall time, at most {100 * max(own):.2f}%, over the "
                      f"{len(own)} SmartLoader runs."]
    if plot_path:
        from smartloader.tools.svg_plot import line_plot_svg
        series = []
        for m in methods:
            d = s["methods"][m]["budgets"]
            pts = sorted((c["wall_s"], 100 * c["acc"]) for c in d.values())
            series.append((m, [p[0] for p in pts], [p[1] for p in pts]))
        line_plot_svg(series, plot_path, f"{cfg['dataset']}: median final accuracy vs wall "
                      f"time, one point per budget", "wall time of the whole run (s)",
                      "final test accuracy (%)", hline=("target", 100 * s["target_acc"]))
        lines += ["", f"![{cfg['dataset']} budgets](img/{os.path.basename(plot_path)})"]
    return "\n".join(lines) + "\n"


def report(path):
    with open(path) as fh:
        saved = json.load(fh)
    s = summarize(saved["runs"])
    if s is None:
        print("no uniform run at fraction 1.0 yet")
        return 0
    print(f"target {100 * s['target_acc']:.2f}% (uniform at 1.0, median) in "
          f"{s['uniform_wall_s']:.1f} s")
    for m, d in s["methods"].items():
        cells = "  ".join(f"{float(f):g}x: {100 * c['acc']:.2f}% {c['wall_s']:.0f}s "
                          f"({c['seeds']})" for f, c in d["budgets"].items())
        sp = (f"speed-up {d['speedup']:.2f}x" if "speedup" in d else
              f"short by {d['short_of_target_pt']:.2f} pt")
        if "speedup_interp" in d:
            sp += f" (interp {d['speedup_interp']:.2f}x)"
        print(f"  {m:>18}: {cells}  | {sp}")
    return 0


def _load_avg():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.split(
        "load average:")[-1].strip()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", choices=sorted(DATASETS))
    p.add_argument("--data", metavar="DIR", help="dataset directory (IDX files or CIFAR-10 "
                                                 "binary batches); nothing is downloaded")
    p.add_argument("--methods", nargs="+", choices=METHODS,
                   default=["uniform", "rs2", "infobatch", "selective_backprop", "topk",
                            "selection", "smartloader", "learnability"])
    p.add_argument("--fractions", nargs="+", metavar="METHOD=F,F",
                   help="override budgets, e.g. smartloader=0.6,0.75 uniform=0.7,1.0")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=30, help="epochs of the uniform run at 1.0")
    p.add_argument("--train-subset", type=int, default=0,
                   help="train on the first N training images (0 = all)")
    p.add_argument("--val", type=int, default=5000, help="validation images (fixed subset)")
    p.add_argument("--width", type=int, default=8, help="ResNet-8 base width")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="")
    p.add_argument("--out", help="result JSON (default "
                                 "benchmarks/results/speedup_<dataset><tag>.json)")
    p.add_argument("--report", metavar="JSON", help="tabulate a result file and exit")
    p.add_argument("--markdown", metavar="JSON", nargs="+",
                   help="print the docs/results.md section of result files (a main run, then "
                        "follow-ups at the same config) and --plot PATH.svg")
    p.add_argument("--title", default="Speed-up at equal accuracy")
    p.add_argument("--plot", help="with --markdown: write the budget plot (SVG) here")
    args = p.parse_args(argv)
    if args.report:
        return report(args.report)
    if args.markdown:
        print(markdown(args.markdown, args.title, args.plot))
        return 0
    if args.dataset is None or args.data is None:
        p.error("give a dataset and --data DIR (or --report JSON)")
    budgets = {m: DEFAULT_FRACTIONS[m] for m in args.methods}
    for spec in args.fractions or []:
        m, _, fs = spec.partition("=")
        if m not in budgets:
            p.error(f"--fractions {spec}: {m!r} is not among --methods {args.methods}")
        budgets[m] = tuple(float(f) for f in fs.split(","))
    torch.set_num_threads(args.threads)
    tx, ty, vx, vy = load_image_dir(args.data)
    if args.train_subset:
        tx, ty = tx[:args.train_subset], ty[:args.train_subset]
    data = (tx, ty, vx[:args.val], vy[:args.val])
    path = args.out or os.path.join(HERE, "results", f"speedup_{args.dataset}{args.tag}.json")
    config = {k: v for k, v in vars(args).items() if k not in ("report", "out", "fractions")}
    config.update(budgets={m: list(f) for m, f in budgets.items()}, model="SmallResNet (ResNet-8)",
                  train_images=len(tx), steps_per_epoch=-(-len(tx) // args.batch_size),
                  augment=DATASETS[args.dataset], load_start=_load_avg(),
                  lr_schedule="5% linear warm-up, cosine to zero over each run's steps",
                  optimizer="SGD nesterov momentum 0.9, weight decay 5e-4")
    runs = []
    print(f"{args.dataset}: {len(tx)} train, {len(data[2])} val, {args.epochs} epochs at 1.0; "
          f"threads {torch.get_num_threads()}; load {config['load_start']}", flush=True)
    for seed in args.seeds:     # interleaved: every method and budget within each seed
        for m in args.methods:
            for f in budgets[m]:
                r = run(m, data, args, seed, f)
                runs.append(r)
                config["load_end"] = _load_avg()
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as fh:
                    json.dump({"runs": runs, "config": config}, fh, indent=1)
                print(f"  seed {seed} {m:>18} x{f:<5g} {100 * r['final_acc']:.2f}% "
                      f"{r['steps']} steps {r['wall_s']:.1f} s", flush=True)
    return report(path)


if __name__ == "__main__":
    sys.exit(main())

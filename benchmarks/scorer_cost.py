"""Scoring cost per step of each scorer, and MixUp vs MixUp + selection at equal steps.

Part 1 (cost): SmallCNN (width 16) on 32 px uint8 synthetic images, batch 64, pool_factor 4
(pool 256), scoring at 16 px, one ranked phase; for each scorer the mean of
``stats.score_time_s`` (the scorer call plus any scoring forward) and of
``stats.scorer_train_time_s`` (a proxy's training step) over the steps, and the median
whole step (loading, selection, the training step), relative to the ``history`` scorer's
(no scoring forward). The loop trains the model and calls ``loader.report_losses``.

Part 2 (accuracy): the same model trained for ``--steps`` yielded steps with MixUp
(alpha 0.2) everywhere, without selection (one uniform phase) and with ranked selection
(10% uniform warm-up, beta 1); test accuracy for each seed.

    OMP_NUM_THREADS=1 python benchmarks/scorer_cost.py --steps 300 --seeds 0 1
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import smartloader
from smartloader.tools.datasets import synthetic_images
from smartloader.tools.demo import SmallCNN, evaluate
from smartloader.scoring.model import default_loss

SCORERS = {"history": {"type": "history"}, "low_res_loss": {"type": "low_res_loss"},
           "proxy (refresh 10)": {"type": "proxy", "refresh_every": 10},
           "proxy_model (width 4)": {"type": "proxy_model", "width": 4},
           "proxy_model (width 4, train_every 4)": {"type": "proxy_model", "width": 4,
                                                    "train_every": 4},
           "proxy_model (width 4, at 16 px)": {"type": "proxy_model", "width": 4,
                                               "resolution": 16},
           "learnability (forward - ema)": {"type": "learnability"},
           "learnability (history - best)": {"type": "learnability", "learner": "history",
                                             "reference": "best"}}


def _data(seed: int, n_train: int = 8000):
    x, y, tx, ty = synthetic_images(n_train=n_train, n_test=2000, size=32, seed=seed)
    ids = torch.arange(len(y))
    return TensorDataset(x, y, ids), tx, ty


def _loop(ds, cfg, steps, seed, report=True):
    torch.manual_seed(seed)  # model init only; the loader owns its own generators
    model = SmallCNN(1, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    dl = DataLoader(ds, batch_size=64, shuffle=True, drop_last=True,
                    generator=torch.Generator().manual_seed(seed))
    loader = smartloader.wrap(dl, model, cfg)
    score_times, train_times, step_times, done, t0 = [], [], [], 0, time.perf_counter()
    while done < steps:
        t_step = time.perf_counter()
        for x, y, _ in loader:
            losses = default_loss(model(x), y)
            if report:
                loader.report_losses(losses)
            opt.zero_grad()
            losses.mean().backward()
            opt.step()
            if loader.stats.scored_by is not None:  # not uniform steps nor lone short pools
                score_times.append(loader.stats.score_time_s)
                train_times.append(loader.stats.scorer_train_time_s)
                step_times.append(time.perf_counter() - t_step)
            t_step = time.perf_counter()
            done += 1
            if done == steps:
                break
    _loop.train_times, _loop.step_times = train_times, step_times
    return model, loader, score_times, time.perf_counter() - t0


def cost(steps: int) -> None:
    ds, _, _ = _data(0)
    print("| scorer | score ms/step | scorer training ms/step | whole step ms | step vs "
          "history (no forward) | forwards / steps |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, scorer in SCORERS.items():
        cfg = {"seed": 0, "pool_factor": 4, "score_resolution": 16, "index_key": 2,
               "scorer": scorer, "phases": [{"name": "select", "selection": "ranked"}]}
        _, loader, times, _ = _loop(ds, cfg, steps, 0)
        ms = 1e3 * statistics.mean(times[2:])  # skip the first steps (warm-up of kernels)
        train = 1e3 * statistics.mean(_loop.train_times[2:])
        step = 1e3 * statistics.median(_loop.step_times[2:])
        if name == "history":
            base = step
        s = loader.stats
        rel = f"{step / base:.2f}x" if base else "-"
        print(f"| {name} | {ms:.2f} | {train:.2f} | {step:.1f} | {rel} | "
              f"{s.scoring_forwards} / {s.scoring_forwards + s.forwards_skipped} |", flush=True)


def accuracy(steps: int, seeds: list[int]) -> None:
    mix = {"type": "mixup", "alpha": 0.2, "num_classes": 10}
    runs = {
        "MixUp": {"pool_factor": 2, "phases": [{"name": "all", "selection": "uniform"}]},
        "MixUp + ranked selection": {"pool_factor": 2, "score_resolution": 16, "phases": [
            {"name": "warmup", "fraction": 0.1, "selection": "uniform"},
            {"name": "select", "selection": "ranked", "beta": 1.0},
            {"name": "cooldown", "fraction": 0.1, "selection": "uniform"}]},
    }
    print(f"\n| run | seed | test acc | wall s |")
    print("|---|---|---|---|")
    for seed in seeds:
        ds, tx, ty = _data(seed)
        for name, cfg in runs.items():
            cfg = {"seed": seed, "total_steps": steps, "batch_transform": mix, **cfg}
            model, _, _, wall = _loop(ds, cfg, steps, seed, report=False)
            print(f"| {name} | {seed} | {evaluate(model, tx, ty):.4f} | {wall:.1f} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cost-steps", type=int, default=40)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--skip-accuracy", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cost(a.cost_steps)
    if not a.skip_accuracy:
        accuracy(a.steps, a.seeds)

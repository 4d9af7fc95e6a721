"""Per-step cost of the logging callbacks (smartloader.integrations.logging), on the CPU.

Two numbers per callback:

- **core**: what giving SmartLoader any callback costs, building each step's ``StepStats``
  (a uniform-phase loop with ``callback=lambda s: None`` against ``callback=None``,
  interleaved epochs, median);
- **callback**: the callback itself, called on the ``StepStats`` of a real run (warm-up,
  ranked selection, cool-down) in order, including its final flush/close, per step.

The loggers write to a temporary directory: TensorBoard event files, a W&B run in offline
mode, an MLflow file store; the progress bar writes to ``os.devnull`` (not a terminal).
Loggers that are not installed are skipped.

    python benchmarks/logging_cost.py --steps 2000
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import smartloader
from smartloader.integrations.logging import (MetricsCallback, ProgressCallback,
                                              TensorBoardCallback)


def _data(n: int, batch_size: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(n, 16, generator=g), torch.randint(0, 4, (n,), generator=g))
    return DataLoader(ds, batch_size=batch_size)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(16, 4)


def record(steps: int) -> list[smartloader.StepStats]:
    """The stats of a real run: 10% uniform warm-up, ranked selection, 10% cool-down."""
    cfg = {"total_steps": steps, "phases": [
        {"name": "warmup", "fraction": 0.1}, {"name": "select", "selection": "ranked"},
        {"name": "cooldown", "fraction": 0.1}]}
    seen: list = []
    loader = smartloader.wrap(_data(4096, 32), _model(), cfg, callback=seen.append)
    while len(seen) < steps:
        for _ in loader:
            if len(seen) == steps:
                break
    return seen


def core_cost(epochs: int) -> float:
    """Seconds per step that having a callback adds to a uniform-phase loop."""
    data = _data(8192, 8)
    uniform = {"phases": [{"name": "uniform"}]}
    plain = smartloader.wrap(data, _model(), uniform)
    called = smartloader.wrap(data, _model(), uniform, callback=lambda s: None)

    def epoch(loader) -> float:
        t0 = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - t0

    epoch(plain), epoch(called)  # warm-up
    diffs = [epoch(called) - epoch(plain) for _ in range(epochs)]
    return statistics.median(diffs) / len(data)


def callback_cost(make, stats: list, repeats: int) -> float:
    """Median over ``repeats`` fresh callbacks of (all calls + close) / steps, seconds."""
    times = []
    for _ in range(repeats):
        cb, close = make()
        t0 = time.perf_counter()
        for s in stats:
            cb(s)
        close()
        times.append((time.perf_counter() - t0) / len(stats))
    return statistics.median(times)


def variants(tmp: str):
    """(name, factory) pairs; a factory returns (callback, close)."""
    out = [("MetricsCallback(no-op log_fn): stats_dict alone",
            lambda: (MetricsCallback(lambda m, step: None), lambda: None))]
    devnull = open(os.devnull, "w")
    out.append(("ProgressCallback (to a file, not a terminal)",
                lambda: _closing(ProgressCallback(file=devnull))))
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print("tensorboard not installed: skipped", file=sys.stderr)
    else:
        for every in (1, 10):
            out.append((f"TensorBoardCallback(dir, every={every})",
                        lambda every=every: _closing(TensorBoardCallback(
                            tempfile.mkdtemp(dir=tmp), every=every))))
    try:
        import wandb
    except ImportError:
        print("wandb not installed: skipped", file=sys.stderr)
    else:
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=tmp)
        for every in (1, 10):
            out.append((f"MetricsCallback(wandb.log, every={every}), offline",
                        lambda every=every: _wandb(wandb, tmp, every)))
    try:
        import mlflow
    except ImportError:
        print("mlflow not installed: skipped", file=sys.stderr)
    else:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        mlflow.set_tracking_uri(f"file://{tmp}/mlruns")
        for every in (1, 10):
            out.append((f"MetricsCallback(mlflow.log_metrics, every={every}), file store",
                        lambda every=every: _mlflow(mlflow, every)))
    return out


def _closing(cb):
    return cb, cb.close


def _wandb(wandb, tmp, every):
    run = wandb.init(mode="offline", dir=tmp, project="logging-cost",
                     settings=wandb.Settings(console="off", save_code=False))
    return MetricsCallback(wandb.log, every=every), run.finish


def _mlflow(mlflow, every):
    mlflow.start_run()
    return MetricsCallback(mlflow.log_metrics, every=every), mlflow.end_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="recorded steps each callback sees")
    ap.add_argument("--repeats", type=int, default=3, help="fresh callbacks per variant")
    ap.add_argument("--epochs", type=int, default=9, help="paired epochs for the core cost")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    stats = record(args.steps)
    print(f"{args.steps} steps ({sum(s.selection != 'uniform' for s in stats)} selecting), "
          f"torch {torch.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"core: building StepStats for a callback: {1e6 * core_cost(args.epochs):.1f} us/step")
    print()
    print("| callback | per step |")
    print("|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in variants(tmp):
            print(f"| {name} | {1e6 * callback_cost(make, stats, args.repeats):.1f} us |",
                  flush=True)
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()  # its service process, before tmp goes
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pass-through overhead: iterating a DataLoader through SmartLoader in a uniform phase.

In a uniform phase SmartLoader hands each wrapped batch on one for one; what it adds is its
bookkeeping (step count, stats, phase lookup). This measures that cost against iterating the
raw loader, interleaved (raw, wrapped, raw, wrapped, ...) so machine drift hits both alike,
and reports the median epoch time of each and their ratio.

    python benchmarks/passthrough.py --epochs 15 --out benchmarks/results/passthrough.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import smartloader


def _epoch_time(loader) -> float:
    t0 = time.perf_counter()
    for batch in loader:
        pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--side", type=int, default=32, help="image side in px (uint8, 3 channels)")
    ap.add_argument("--epochs", type=int, default=15, help="timed epochs of each")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON file for the result")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randint(0, 256, (args.samples, 3, args.side, args.side),
                                     dtype=torch.uint8, generator=g),
                       torch.randint(0, 10, (args.samples,), generator=g))
    raw = DataLoader(ds, batch_size=args.batch_size, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
    wrapped = smartloader.wrap(raw, model, {"phases": [{"name": "uniform"}]})
    _epoch_time(raw), _epoch_time(wrapped)  # warm-up
    t_raw, t_wrapped = [], []
    for _ in range(args.epochs):
        t_raw.append(_epoch_time(raw))
        t_wrapped.append(_epoch_time(wrapped))
    med_raw, med_wrapped = statistics.median(t_raw), statistics.median(t_wrapped)
    batches = len(raw)
    per_batch_us = (med_wrapped - med_raw) / batches * 1e6
    result = {
        "raw_epoch_s": med_raw, "wrapped_epoch_s": med_wrapped,
        "overhead_pct": 100 * (med_wrapped / med_raw - 1), "overhead_per_batch_us": per_batch_us,
        "paired_overhead_pct_median": 100 * statistics.median(
            w / r - 1 for r, w in zip(t_raw, t_wrapped)),
        "config": {"samples": args.samples, "batch_size": args.batch_size, "side": args.side,
                   "epochs": args.epochs, "threads": args.threads, "batches": batches,
                   "torch": torch.__version__, "python": platform.python_version(),
                   "cpu": platform.processor() or platform.machine(),
                   "load_avg_1m": os.getloadavg()[0]},
    }
    print(f"raw loader    {med_raw * 1e3:8.2f} ms/epoch ({batches} batches of {args.batch_size})")
    print(f"SmartLoader   {med_wrapped * 1e3:8.2f} ms/epoch, uniform phase")
    print(f"overhead      {result['overhead_pct']:+.2f}% ({per_batch_us:.1f} us per batch; "
          f"paired median {result['paired_overhead_pct_median']:+.2f}%)")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

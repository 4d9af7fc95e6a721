"""Resume time, ``--batches`` into an epoch: a loader that keeps its own position against one
that is re-read.

A map-style dataset makes each 3x32x32 uint8 image from its index (a stand-in for decoding;
about 10-20 us an item on one CPU thread). Both wrapped loaders shuffle with a
``DistributedSampler`` (one replica), so their order is a function of (seed, epoch) and the
re-read path is exact too. For each loader SmartLoader (one uniform phase, so one wrapped
batch per step) runs ``--batches`` steps, saves its state, and a fresh SmartLoader over a
fresh loader loads it; the time measured is from ``load_state_dict`` to the first resumed
batch in hand. The two resumed batches are checked equal to the uninterrupted run's.

- ``StatefulDataLoader``: its state is nested in SmartLoader's and restored; the sampler
  is fast-forwarded, no item is read.
- ``DataLoader``: SmartLoader re-reads (without scoring or yielding) the consumed batches.

    OMP_NUM_THREADS=1 python benchmarks/resume_time.py --batches 10000 \\
        --out benchmarks/results/resume_time.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import smartloader

warnings.filterwarnings("ignore", message=".*set_vital.*")


class MadeImages(Dataset):
    """``n`` images made from their index: the same item every time it is read."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        return torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8), i % 10


def make(kind: str, n: int, batch: int):
    from torchdata.stateful_dataloader import StatefulDataLoader
    ds = MadeImages(n)
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    cls = StatefulDataLoader if kind == "StatefulDataLoader" else DataLoader
    return cls(ds, batch_size=batch, sampler=sampler)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))


def measure(kind: str, batches: int, batch: int) -> dict:
    cfg = {"phases": [{"name": "uniform", "selection": "uniform"}], "seed": 0}
    n = batch * (batches + 100)
    sl = smartloader.wrap(make(kind, n, batch), model(), cfg)
    it = iter(sl)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    run_s = time.perf_counter() - t0
    state = sl.state_dict()
    expected = next(it)[0]        # the uninterrupted run's next batch
    it.close()

    fresh = smartloader.wrap(make(kind, n, batch), model(), cfg)
    t0 = time.perf_counter()
    fresh.load_state_dict(state)
    got = next(iter(fresh))[0]
    resume_s = time.perf_counter() - t0
    return {"loader": kind, "batches_in": batches, "batch_size": batch,
            "nested_state": state["loader"] is not None, "first_pass_s": round(run_s, 3),
            "resume_s": round(resume_s, 4), "same_next_batch": bool(torch.equal(got, expected))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    runs = [measure(kind, args.batches, args.batch_size)
            for kind in ("StatefulDataLoader", "DataLoader")]
    for r in runs:
        print(f"{r['loader']:>18}: resume {r['resume_s']:8.3f} s after {r['batches_in']} "
              f"batches (first pass {r['first_pass_s']:.1f} s; state nested: "
              f"{r['nested_state']}; next batch equal: {r['same_next_batch']})")
    ratio = runs[1]["resume_s"] / runs[0]["resume_s"]
    print(f"re-reading takes {ratio:.0f}x as long as restoring the loader's own state")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"runs": runs, "reread_over_restore": round(ratio, 1),
                       "torch": torch.__version__, "python": platform.python_version(),
                       "threads": 1}, f, indent=1)


if __name__ == "__main__":
    main()

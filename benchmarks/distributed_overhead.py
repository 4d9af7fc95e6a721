"""Per-step cost of global vs local selection on 2 CPU ranks (gloo), pool sizes 256..4096.

    python benchmarks/distributed_overhead.py [--steps 200]

Times only what differs between the scopes: choosing the batch from a pool of scoring losses
(``SmartLoader._choose`` path). Local = rank + Gumbel-top-k on the own pool; global = the
same plus the two all-gathers (sizes, padded losses) and the global ranking. The scoring
forward, identical in both, is excluded. Each rank is one process with one torch thread;
the reported time is rank 0's median over ``--steps`` steps (after 20 warm-up steps).
"""
import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from smartloader.pipeline.distributed import DistributedSync
from smartloader.selection.ranked import gumbel_top_k, ranked_log_weights

POOLS = (256, 512, 1024, 2048, 4096)
POOL_FACTOR = 2


def worker(rank: int, tmp: str, steps: int, q) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rdzv", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    g = torch.Generator().manual_seed(rank)
    sync = DistributedSync("global")
    rows = []
    for n in POOLS:
        k = n // POOL_FACTOR
        losses = torch.rand(n, generator=g)
        res = {}
        for scope in ("local", "global"):
            times, comm = [], []
            for i in range(steps + 20):
                dist.barrier()  # start each step together, as training steps do
                t0 = time.perf_counter()
                if scope == "global":
                    log_w = sync.log_weights(losses, 1.0)
                else:
                    log_w = ranked_log_weights(losses, 1.0)
                gumbel_top_k(log_w, k, g)
                if i >= 20:
                    times.append(time.perf_counter() - t0)
                    comm.append(sync.comm_time_s)
            res[scope] = statistics.median(times)
            res[scope + "_comm"] = statistics.median(comm) if scope == "global" else 0.0
        rows.append((n, res["local"], res["global"], res["global_comm"], sync.comm_bytes))
    if rank == 0:
        q.put(rows)
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=worker, args=(r, tmp, args.steps, q)) for r in range(2)]
        for pr in procs:
            pr.start()
        rows = q.get(timeout=600)
        for pr in procs:
            pr.join(60)
    print(f"torch {torch.__version__}, 2 ranks gloo CPU, {os.cpu_count()} cores, "
          f"pool_factor {POOL_FACTOR}, median of {args.steps} steps (rank 0)")
    print("| pool (samples/rank) | local select (ms) | global select (ms) | of which comm (ms) "
          "| extra (ms) | bytes received/step |")
    print("|---|---|---|---|---|---|")
    for n, loc, glo, comm, nbytes in rows:
        print(f"| {n} | {loc * 1e3:.3f} | {glo * 1e3:.3f} | {comm * 1e3:.3f} | "
              f"{(glo - loc) * 1e3:.3f} | {nbytes} |")


if __name__ == "__main__":
    sys.exit(main())

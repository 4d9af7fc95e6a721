"""Time SmartLoader's selection machinery alone (no scoring forward), on CPU.

Pool = pool_factor batches of (uint8 images, int64 labels, int64 indices). Measures, per
selection step: concatenating the pool, ranking + Gumbel-top-k draw, and subsetting every
field, i.e. exactly what `SmartLoader._select` does besides calling the model.

    python benchmarks/machinery.py --pool 512 --size 32
"""
import argparse
import statistics
import time

import torch

from smartloader.common import batch as B
from smartloader.selection.ranked import gumbel_top_k, ranked_log_weights


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pool", type=int, default=512)
    p.add_argument("--pool-factor", type=int, default=2)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--reps", type=int, default=300)
    a = p.parse_args()
    b = a.pool // a.pool_factor
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (b, 3, a.size, a.size), dtype=torch.uint8, generator=g),
                torch.randint(0, 10, (b,), generator=g), torch.arange(b) + i * b)
               for i in range(a.pool_factor)]
    losses = torch.rand(a.pool, generator=g)
    sizes = [b] * a.pool_factor
    t_pool, t_sel = [], []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        pooled = B.concat_batches(batches, sizes)
        t1 = time.perf_counter()
        finite = torch.isfinite(losses).all()
        lw = ranked_log_weights(losses, 1.0)
        lw = torch.where(finite, lw, torch.zeros_like(lw))
        idx = gumbel_top_k(lw, b, g)
        B.take(pooled, idx, a.pool)
        t2 = time.perf_counter()
        t_pool.append(t1 - t0)
        t_sel.append(t2 - t1)
    mp, ms = 1000 * statistics.median(t_pool), 1000 * statistics.median(t_sel)
    print(f"pool {a.pool} ({a.pool_factor} x {b}), {a.size}px uint8 RGB, "
          f"{torch.get_num_threads()} threads: concat {mp:.3f} ms, rank+draw+subset "
          f"{ms:.3f} ms, machinery {mp + ms:.3f} ms per step (median of {a.reps})")


if __name__ == "__main__":
    main()

"""Posterior predictive check benchmark (issue 16): 8,000 cells x 2,000 genes x 20 replicates.

The evaluation benchmark's model (``bench_evaluate.build``: n_latent 100, one hidden layer of 400, nb,
150 perturbations plus control, untrained parameters, which cost the same) checked on its 8,000 test
cells: ``model.check(n_samples=20)`` in one mode and in both, with the wall and CPU time (the CPU time is
the fairer number on a shared machine), cells per second and peak memory.

Usage
-----
    python benchmarks/bench_check.py [--threads 1] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from bench_evaluate import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-samples", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build("correlated", 16000)
    for modes in (("in_sample",), ("generative",), ("in_sample", "generative")):
        start, cpu = time.perf_counter(), time.process_time()
        check = model.check(split="test", n_samples=args.n_samples, modes=modes, batch_size=args.batch_size)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        n_cells = check.coverage.attrs["n_entries"] // model.data.n_genes
        print(f"check {'+'.join(modes)}: {n_cells} cells x {model.data.n_genes} genes x {args.n_samples} replicates: "
              f"{seconds:.1f} s wall, {cpu:.1f} s CPU ({n_cells * len(modes) / seconds:.0f} cell-modes/s), "
              f"table {len(check.table)} rows")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB ({args.threads} threads, batch {args.batch_size})")


if __name__ == "__main__":
    main()

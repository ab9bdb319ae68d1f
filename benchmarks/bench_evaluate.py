"""Evaluation-speed benchmark (issue 4): held-out IWELBO and posterior-predictive model ATE.

At the training benchmark's model size (n_latent 100, one hidden layer of 400, nb likelihood,
2,000 genes, 150 perturbations plus control; untrained parameters, which cost the same):

* IWELBO of 8,000 held-out cells with 100 particles (globals drawn once, shared by all batches);
* model ATE of 150 perturbations x 2,000 genes with 2,500 particles (50 global draws x 50 samples),
  count samples at library 1e4, credible intervals from the 50 global draws.

Usage
-----
    python benchmarks/bench_evaluate.py [--threads 2] [--iwelbo-batch 64] [--guide correlated] [--device cuda]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch


def build(guide: str, n_cells: int, device: str = "cpu"):
    import anndata as ad
    import scipy.sparse as sp

    from samsvae_pyro import SAMSVAE

    rng = np.random.default_rng(0)
    counts = sp.random(n_cells, 2000, density=0.1, format="csr", random_state=0,
                       data_rvs=lambda k: rng.integers(1, 20, k)).astype(np.float32)
    labels = np.array(["ctrl"] + [f"P{t:03d}" for t in range(150)])[rng.integers(0, 151, n_cells)]
    split = np.where(np.arange(n_cells) < n_cells // 2, "train", "test")
    adata = ad.AnnData(counts, obs={"perturbation": labels, "split": split})
    adata.obs_names = [f"c{i}" for i in range(n_cells)]
    adata.var_names = [f"g{i}" for i in range(2000)]
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="ctrl", split_key="split")
    return SAMSVAE(adata, n_latent=100, n_hidden=400, guide=guide, device=device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--guide", default="correlated")
    parser.add_argument("--iwelbo-batch", type=int, default=64)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.guide, 16000, args.device)
    start = time.perf_counter()
    values = model.iwelbo(split="test", n_particles=100, batch_size=args.iwelbo_batch)
    iwelbo_s = time.perf_counter() - start
    start = time.perf_counter()
    ate = model.model_ate(n_global_draws=50, samples_per_draw=50)
    if args.device == "cuda":
        torch.cuda.synchronize()
    ate_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"IWELBO: {len(values)} cells x 100 particles: {iwelbo_s:.1f} s ({len(values) / iwelbo_s:.0f} cells/s)")
    print(f"model ATE: {ate.n_obs} perturbations x {ate.n_vars} genes x 2,500 particles: {ate_s:.1f} s")
    print(f"peak RSS: {peak:.0f} MiB (guide {args.guide}, {args.threads} threads, device {args.device})")
    if args.device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

"""Larger batches and the learning rate (issue 15, item 4): held-out IWELBO at an equal number of epochs.

On a GPU a step costs nearly the same at batch 512 and 2048 (the per-step cost is Python and Pyro work,
``bench_overhead.py``), so a larger batch processes more cells per second; the question is which learning
rate keeps the fit as good per epoch. Runs on the demo simulation (``samsvae_pyro.runs.train.demo_data``:
12 perturbations, 6 pairs of which 2 are held out, the package defaults: SAMS-VAE, correlated guide,
n_latent 10, n_hidden 128, Adam lr 3e-3 at batch 512): batch 512 at lr 3e-3, and batch 2048 at lr
3e-3 (unchanged), 6e-3 (square-root rule, lr x sqrt(4)), 1.2e-2 (linear rule, lr x 4) and 2.4e-2, every run
for the same number of epochs. Reported: the validation-split predictive IWELBO per cell (nats, higher
is better; 100 particles), the final training loss, and the run's CPU seconds.

Usage
-----
    python benchmarks/batch_lr.py                    # 200 epochs, seeds 0 1
    python benchmarks/batch_lr.py --epochs 100 --seeds 0
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import pandas as pd
import torch

BASE_BATCH, BASE_LR = 512, 3e-3
RUNS = (  # (label, batch size, learning rate)
    ("512, lr 3e-3", 512, BASE_LR),
    ("2048, lr 3e-3 (unscaled)", 2048, BASE_LR),
    ("2048, lr 6e-3 (sqrt rule)", 2048, BASE_LR * math.sqrt(2048 / BASE_BATCH)),
    ("2048, lr 1.2e-2 (linear rule)", 2048, BASE_LR * 2048 / BASE_BATCH),
    ("2048, lr 2.4e-2 (twice linear)", 2048, 2 * BASE_LR * 2048 / BASE_BATCH),
)


def fit(label: str, batch_size: int, lr: float, epochs: int, seed: int) -> dict:
    from samsvae_pyro import SAMSVAE
    from samsvae_pyro.runs.train import DEMO_SETUP, demo_data

    adata, _ = demo_data(seed=seed)
    SAMSVAE.setup_anndata(adata, **DEMO_SETUP)
    model = SAMSVAE(adata, guide="correlated", device="cpu", threads=1)
    n_train = len(model.data.indices("train"))
    steps = math.ceil(epochs * n_train / batch_size)
    start = time.process_time()
    history = model.train(max_steps=steps, batch_size=batch_size, lr=lr, val_every=steps, seed=seed, progress=False)
    cpu = time.process_time() - start
    iwelbo = float(model.iwelbo(split="val", n_particles=100).mean())
    return {"run": label, "seed": seed, "steps": steps, "iwelbo": iwelbo,
            "train_loss": float(history["train_loss"].tail(20).mean()), "cpu_s": cpu}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for seed in args.seeds:
        for label, batch_size, lr in RUNS:
            rows.append(fit(label, batch_size, lr, args.epochs, seed))
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    table = frame.groupby("run", sort=False).agg(
        steps=("steps", "first"), iwelbo=("iwelbo", statistics.mean), iwelbo_sd=("iwelbo", "std"),
        train_loss=("train_loss", statistics.mean), cpu_s=("cpu_s", statistics.mean))
    print(f"\n{args.epochs} epochs, seeds {args.seeds}: validation IWELBO per cell (nats, higher is better)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()

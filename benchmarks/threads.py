"""Torch thread count vs SVI step time, on the machine as it is and under an added CPU load (issue 17).

Two problem sizes:

- ``small``: the demo's size (12 perturbations, 60 genes, 2,600 cells; n_latent 8, n_hidden 128,
  batch 256, correlated guide);
- ``paper``: the paper's Replogle-filtered size (722 perturbations, 1,187 genes; n_latent 100,
  n_hidden 400, correlated guide with embedding MLP 2 x 200, batch 512, 5 particles), simulated.

For each size one process builds the model once, then alternates thread counts (1 and torch's default,
plus any ``--threads``) in rounds of ``--steps`` training steps, so that every setting sees the same
drifting background load; the median seconds per step of each setting is reported, with the ratio to
one thread. Then the same again while ``--load`` extra processes keep the CPU busy (a steady outside
load, as on a shared server): plain Python loops (``--load-kind spin``) or torch jobs with torch's default
thread count (``torch``, as another user's training would). Ratios within one run are what to
compare: absolute times depend on whatever else the machine is doing.

Usage
-----
    env -u OMP_NUM_THREADS python benchmarks/threads.py --sizes small paper --steps 5 --rounds 3 \
        --load 2 --load-kind torch
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

SIZES = {
    "small": dict(sim=dict(n_perturbations=12, n_genes=60, cells_per_perturbation=200, n_double=0),
                  model=dict(n_latent=8, n_hidden=128, mask_prior_prob=0.1,
                             guide_kwargs={"embedding_hidden": 128}), batch_size=256),
    "paper": dict(sim=dict(n_perturbations=722, n_genes=1187, cells_per_perturbation=12, n_double=0),
                  model=dict(n_latent=100, n_hidden=400, mask_prior_prob=0.01,
                             guide_kwargs={"embedding_hidden": 200, "embedding_layers": 2}), batch_size=512),
}


def _spin(stop, kind: str) -> None:
    """Keep one core busy: plain Python ("spin"), or torch with its default threads ("torch", as another
    torch job on the same machine would)."""
    if kind == "spin":
        while not stop.is_set():
            sum(i * i for i in range(10_000))
        return
    import torch

    a = torch.randn(256, 256)
    while not stop.is_set():
        for _ in range(20):
            a = torch.tanh(a @ a.T / 16)


def build(size: str):
    from samsvae_pyro import SAMSVAE, simulate_counts

    spec = SIZES[size]
    adata = simulate_counts(n_ate_samples=10, seed=0, **spec["sim"])
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting",
                          split_key="split")
    return SAMSVAE(adata, device="cpu", threads=None, **spec["model"]), spec["batch_size"]


def time_steps(model, batch_size: int, threads: int, steps: int) -> list[float]:
    import torch

    torch.set_num_threads(threads)
    stamps: list[float] = []
    model.train(max_steps=steps + 1, batch_size=batch_size, val_every=10**9, progress=False,
                callback=lambda _trainer: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def measure(size: str, settings: list[int], steps: int, rounds: int) -> dict[int, float]:
    model, batch_size = build(size)
    times: dict[int, list[float]] = {n: [] for n in settings}
    for _ in range(rounds):
        for n in settings:
            times[n] += time_steps(model, batch_size, n, steps)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "paper"], choices=sorted(SIZES))
    parser.add_argument("--threads", nargs="*", type=int, default=[], help="extra thread counts to try")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and setting")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, default=os.cpu_count(), help="busy processes for the loaded run")
    parser.add_argument("--load-kind", default="spin", choices=("spin", "torch"))
    args = parser.parse_args()

    import torch

    default = torch.get_num_threads()
    settings = sorted({1, default, *args.threads})
    print(f"cores {os.cpu_count()}, torch default threads {default}, settings {settings}", flush=True)
    print("| size | load | threads | s/step | vs 1 thread |\n|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        for load in (0, args.load):
            context = multiprocessing.get_context("spawn")  # a forked torch child can hang on OpenMP state
            stop = context.Event()
            spinners = [context.Process(target=_spin, args=(stop, args.load_kind), daemon=True) for _ in range(load)]
            for p in spinners:
                p.start()
            try:
                result = measure(size, settings, args.steps, args.rounds)
            finally:
                stop.set()
                for p in spinners:
                    p.join()
            for n, s in result.items():
                print(f"| {size} | +{load} {args.load_kind} | {n} | {s:.3f} | {s / result[1]:.1f}x |", flush=True)


if __name__ == "__main__":
    main()

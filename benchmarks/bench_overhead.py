"""Per-step overhead of SAMS-VAE training (issue 15, item 4): Python and Pyro work versus arithmetic.

A training step costs the same Python work (Pyro's tracing and site processing, distribution objects,
the trainer's bookkeeping) whatever the problem size; only the arithmetic grows with it. Three
measurements, each on the paper's Replogle configuration (``bench_train.py``: 25,600 simulated cells x
2,000 genes, 150 perturbations, K = 100, H = 400, batch 512, 5 particles, estimator "trace") and on a
tiny problem with the same program (16 cells per batch, 20 genes, 4 perturbations, K = 4, H = 8) where
the arithmetic is negligible:

* ``time``: median wall and process-CPU seconds per step (after a warm-up) for both guides. The tiny
  step is the per-step overhead; on a GPU, where the arithmetic of the Replogle step shrinks by one to
  two orders of magnitude while the Python work stays, the tiny step is roughly the floor of a step.
* ``syncs``: the host-device synchronisations of one training step (``Tensor.item``, ``bool``,
  ``float``, ``int``, ``tolist``, ``numpy`` on a tensor), counted by wrapping those methods; on CUDA
  each one waits for every kernel queued so far.
* ``count``: Python function calls and torch operator calls per step on the tiny problem: deterministic
  measures of the per-step work, to compare versions on a machine too busy for timings.
* ``profile``: cProfile of steps on the tiny problem, cumulative time grouped by where it is spent
  (Pyro's handlers and trace processing, distributions, torch ops, the trainer, the data loader).

Usage
-----
    python benchmarks/bench_overhead.py                      # all three, both guides
    python benchmarks/bench_overhead.py --what syncs --guide mean_field
    python benchmarks/bench_overhead.py --what profile --steps 200 --top 30
    python benchmarks/bench_overhead.py --what time --device cuda   # on a GPU (benchmarks/gpu.sh)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train  # the Replogle-size dataset and model of the training benchmark

TINY = {"n_latent": 4, "n_perturbations": 4, "n_genes": 20, "cells_per_perturbation": 40, "n_control_cells": 40}
TINY_MODEL = {"n_latent": 4, "n_hidden": 8, "n_layers": 1, "likelihood": "nb"}
TINY_BATCH = 16
SYNC_METHODS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy")


def tiny_model(guide: str, device: str = "cpu"):
    from samsvae_pyro import SAMSVAE
    from samsvae_pyro.data import simulate_counts

    adata = simulate_counts(**TINY, split_fractions=(1.0, 0.0, 0.0), n_ate_samples=2, seed=0)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return SAMSVAE(adata, guide=guide, device=device, **TINY_MODEL)


def replogle_model(guide: str, data: Path, device: str = "cpu"):
    return bench_train.build_pyro(bench_train.make_data(data), guide, device)


def step_times(model, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds between consecutive training steps after ``warmup`` (on a GPU,
    each step's end waits for its kernels)."""
    stamps = []
    model.train(max_steps=steps, batch_size=batch_size, n_particles=5, estimator="trace", val_every=10**9,
                progress=False, seed=0, callback=lambda _t: stamps.append(bench_train.stamp()[:2]))
    s = np.array(stamps)[warmup:]
    return float(np.median(np.diff(s[:, 0]))), float(np.median(np.diff(s[:, 1])))


class SyncCounter:
    """Count calls of the tensor methods that copy a value to the host (a synchronisation on CUDA)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.where: Counter = Counter()
        self.active = False

    def __enter__(self):
        self.saved = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, self._wrap(name, method))
        return self

    def _wrap(self, name, method):
        def wrapped(tensor, *args, **kwargs):
            if self.active:
                self.counts[name] += 1
                caller = sys._getframe(1)
                self.where[f"{name} in {Path(caller.f_code.co_filename).name}:{caller.f_lineno} "
                           f"({caller.f_code.co_name})"] += 1
            return method(tensor, *args, **kwargs)
        return wrapped

    def __exit__(self, *exc):
        for name, method in self.saved.items():
            setattr(torch.Tensor, name, method)


def count_syncs(model, batch_size: int, steps: int = 5) -> SyncCounter:
    """Synchronisations per training step, counted over ``steps`` steps after the first one (Pyro's checks)."""
    counter = SyncCounter()

    def after_step(trainer):
        counter.active = True  # from the end of the first step on

    with counter:
        model.train(max_steps=steps + 1, batch_size=batch_size, val_every=10**9, progress=False, seed=0,
                    callback=after_step)
        counter.active = False
    for key in counter.where:
        counter.where[key] /= steps
    return counter


GROUPS = (  # (label, substring of the file path); the first match wins
    ("pyro.poutine (handlers, trace)", "/pyro/poutine/"),
    ("pyro.infer (ELBO, trace processing)", "/pyro/infer/"),
    ("pyro.distributions", "/pyro/distributions/"),
    ("pyro.nn (PyroModule attribute hooks)", "/pyro/nn/"),
    ("pyro primitives and param store", "/pyro/"),
    ("torch.distributions", "/torch/distributions/"),
    ("torch.optim", "/torch/optim/"),
    ("torch.nn", "/torch/nn/"),
    ("torch.autograd (backward)", "/torch/autograd/"),
    ("samsvae_pyro.data (loader)", "/samsvae_pyro/data/"),
    ("samsvae_pyro.infer (trainer)", "/samsvae_pyro/infer/"),
    ("samsvae_pyro models, guides, nn", "/samsvae_pyro/"),
    ("scipy / numpy", "/scipy/"),
)


def profile_steps(model, batch_size: int, steps: int, top: int) -> None:
    """cProfile ``steps`` training steps: total time by group (own time) and the top functions by own time."""
    model.train(max_steps=2, batch_size=batch_size, val_every=10**9, progress=False, seed=0)
    profiler = cProfile.Profile()
    profiler.enable()
    model.train(max_steps=steps, batch_size=batch_size, val_every=10**9, progress=False, seed=0)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # own time of every function
    by_group: Counter = Counter()
    for (filename, _line, _name), row in stats.stats.items():
        label = next((lab for lab, part in GROUPS if part in filename), "builtins / C (torch ops, etc.)"
                     if filename == "~" else "other Python")
        by_group[label] += row[2]
    print(f"\nown time by group, {steps} steps, {1e3 * total / steps:.2f} ms/step under cProfile:")
    for label, seconds in by_group.most_common():
        print(f"  {label:<40} {1e3 * seconds / steps:8.3f} ms/step  {100 * seconds / total:5.1f}%")
    print(f"\ntop {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


def count_work(model, batch_size: int, steps: int) -> tuple[float, float]:
    """Python function calls and top-level torch operator calls per training step (deterministic, unlike
    timings on a shared machine): cProfile's call count and torch.profiler's aten ops not called by another."""
    from torch.profiler import ProfilerActivity, profile

    model.train(max_steps=2, batch_size=batch_size, val_every=10**9, progress=False, seed=0)
    profiler = cProfile.Profile()
    profiler.enable()
    model.train(max_steps=steps, batch_size=batch_size, val_every=10**9, progress=False, seed=0)
    profiler.disable()
    calls = sum(row[1] for row in pstats.Stats(profiler).stats.values())
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.train(max_steps=steps, batch_size=batch_size, val_every=10**9, progress=False, seed=0)
    ops = sum(1 for e in prof.events() if e.name.startswith("aten::")
              and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    return calls / steps, ops / steps


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", choices=("all", "time", "syncs", "profile", "count"), default="all")
    p.add_argument("--guide", choices=(*bench_train.GUIDES, "all"), default="all")
    p.add_argument("--steps", type=int, default=40, help="timed steps at the Replogle size (tiny: 10x)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1, help="timing runs per configuration (median)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--data", type=Path, default=bench_train.DEFAULT_DATA)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the models train (time only)")
    p.add_argument("--sizes", choices=("both", "tiny", "replogle"), default="both", help="problem sizes timed")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    guides = bench_train.GUIDES if args.guide == "all" else (args.guide,)
    for guide in guides:
        if args.what in ("all", "time"):
            rows, sizes = {}, ("tiny", "replogle") if args.sizes == "both" else (args.sizes,)
            for _ in range(args.repeats):
                for size in sizes:
                    model = (tiny_model(guide, args.device) if size == "tiny"
                             else replogle_model(guide, args.data, args.device))
                    batch, steps = (TINY_BATCH, 10 * args.steps) if size == "tiny" else (512, args.steps)
                    rows.setdefault(size, []).append(step_times(model, batch, steps, args.warmup))
            medians = {size: [statistics.median(v) for v in zip(*runs)] for size, runs in rows.items()}
            print(f"{guide} ({Path(sys.modules['samsvae_pyro'].__file__).parent}): " + "; ".join(
                f"{size} {1e3 * wall:.2f} ms/step (CPU {1e3 * cpu:.2f})" for size, (wall, cpu) in medians.items())
                + ("; tiny / Replogle = {:.3f} (CPU {:.3f})".format(*(t / r for t, r in zip(
                    medians["tiny"], medians["replogle"]))) if len(medians) == 2 else ""), flush=True)
        if args.what in ("all", "count"):
            calls, ops = count_work(tiny_model(guide), TINY_BATCH, args.steps)
            print(f"{guide} ({Path(sys.modules['samsvae_pyro'].__file__).parent}, tiny): {calls:.0f} Python calls "
                  f"and {ops:.0f} torch ops per training step", flush=True)
        if args.what in ("all", "syncs"):
            for size in ("tiny", "replogle"):
                model = tiny_model(guide) if size == "tiny" else replogle_model(guide, args.data)
                counter = count_syncs(model, TINY_BATCH if size == "tiny" else 512)
                per_step = sum(counter.where.values())
                print(f"{guide} ({size}): {per_step:g} host syncs per training step", flush=True)
                for where, n in counter.where.most_common():
                    print(f"    {n:5.2f}  {where}")
        if args.what in ("all", "profile"):
            print(f"== profile, {guide}, tiny problem", flush=True)
            profile_steps(tiny_model(guide), TINY_BATCH, 10 * args.steps, args.top)


if __name__ == "__main__":
    main()

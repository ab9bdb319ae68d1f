"""Training-speed benchmark of SAMS-VAE (issue 3): seconds per SVI step, cells per second, peak RSS.

Problem: 25,600 simulated cells x 2,000 genes, 150 perturbations plus control (all cells in the
training split, no validation), SAMSVAE(n_latent=100, n_hidden=400, n_layers=1, likelihood="nb"),
batch 512, 5 vectorised particles, estimator "trace", for the "correlated" and "mean_field" guides.
For scale, the same step is also written in plain PyTorch (``reference``): the same parameters,
shapes and ELBO terms (straight-through mask, q(E), encoder G(+K) -> 400 -> 2K shared over
particles for the x block, decoder K -> 400 -> G with a library-size softmax NB), with no Pyro.
The ratio Pyro / reference is the overhead of writing the model as a Pyro program.

Every configuration runs in its own subprocess so that peak RSS (``getrusage``, the high-water
mark of the process) belongs to that configuration alone; the dataset is simulated once and cached
as an .h5ad file. Step times are taken between consecutive training steps (loading the batch
included); the first ``--warmup`` steps are dropped and the median of the rest is reported.

Usage
-----
    python benchmarks/bench_train.py                     # both guides + reference, 50 steps
    python benchmarks/bench_train.py --guide mean_field --steps 30 --threads 2 --repeats 3
    python benchmarks/bench_train.py --profile correlated  # torch.profiler table of 5 steps
    python benchmarks/bench_train.py --device cuda --no-reference  # on a GPU (see benchmarks/gpu.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GUIDES = ("correlated", "mean_field")
N_LATENT, N_HIDDEN, N_GENES, N_PERTURBATIONS = 100, 400, 2000, 150
CELLS_PER_PERTURBATION, N_CONTROL = 170, 100  # 150 * 170 + 100 = 25,600 cells
DEFAULT_DATA = Path(os.environ.get("TMPDIR", "/tmp")) / "samsvae_bench_25600x2000.h5ad"


# ---------------------------------------------------------------------------------------------- data
def make_data(path: Path):
    """Simulate (or read the cached) 25,600 x 2,000 count dataset, every cell in the training split."""
    import anndata as ad

    if path.exists():
        return ad.read_h5ad(path)
    from samsvae_pyro.data import simulate_counts

    adata = simulate_counts(
        n_latent=10, n_perturbations=N_PERTURBATIONS, n_genes=N_GENES,
        cells_per_perturbation=CELLS_PER_PERTURBATION, n_control_cells=N_CONTROL,
        split_fractions=(1.0, 0.0, 0.0), n_ate_samples=10, seed=0,
    )
    del adata.uns["sams_truth"], adata.obsm["z_basal"], adata.obsm["z"]
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)
    return adata


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used (Linux /proc/stat; NaN elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def stamp() -> tuple[float, float, float]:
    """(wall-clock, CPU time of this process's threads, CPU time of the whole machine) now (after the GPU's queue)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time(), machine_busy_seconds()


def summarise(stamps: list[tuple[float, float, float]], warmup: int, batch_size: int) -> dict:
    """Median wall and CPU seconds per step after ``warmup`` steps (stamps are step ends), and the
    average number of cores that other processes kept busy meanwhile (the benchmark's noise)."""
    stamps = np.array(stamps)[warmup:]
    wall, cpu = np.diff(stamps[:, 0]), np.diff(stamps[:, 1])
    median = float(np.median(wall))
    others = (stamps[-1, 2] - stamps[0, 2] - cpu.sum()) / wall.sum()
    return {"s_per_step": median, "cells_per_s": batch_size / median, "cpu_s_per_step": float(np.median(cpu)),
            "other_cores": float(max(others, 0.0)), "n_timed": len(wall)}


# ---------------------------------------------------------------------------------------------- pyro
def build_pyro(adata, guide: str, device: str = "cpu"):
    from samsvae_pyro import SAMSVAE

    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting",
                          split_key="split")
    return SAMSVAE(adata, n_latent=N_LATENT, n_hidden=N_HIDDEN, n_layers=1, likelihood="nb", guide=guide,
                   device=device)


def run_pyro(adata, guide: str, args) -> dict:
    model = build_pyro(adata, guide, args.device)
    stamps: list[tuple[float, float]] = []
    model.train(max_steps=args.steps, batch_size=args.batch_size, n_particles=args.particles,
                estimator="trace", val_every=10**9, progress=False, seed=0,
                callback=lambda _trainer: stamps.append(stamp()))
    return summarise(stamps, max(args.warmup, 1) - 1, args.batch_size)


def profile_pyro(adata, guide: str, args) -> None:
    """Print torch.profiler's table (self CPU time, by input shapes) of 5 training steps after the warm-up."""
    from torch.profiler import ProfilerActivity, profile, schedule

    model = build_pyro(adata, guide)
    plan = schedule(wait=args.warmup, warmup=1, active=5, repeat=1)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, schedule=plan) as prof:
        model.train(max_steps=args.warmup + 6, batch_size=args.batch_size, n_particles=args.particles,
                    val_every=10**9, progress=False, callback=lambda _trainer: prof.step())
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40))


def verify_pyro(adata, guide: str, args) -> None:
    """Check from the ops of two training steps that only what the objective needs is computed.

    * x is observed and never sampled (no Gamma/Poisson draws, ``LibraryNegativeBinomial.sample`` unused);
    * the data-only NB terms (log-gamma functions, library and dispersion) are computed on (B, G),
      not on (S, B, G);
    * the encoder's expression block is a (B, G) x (G, H) product, not one per particle.
    """
    from torch.profiler import ProfilerActivity, profile

    from samsvae_pyro.distributions import LibraryNegativeBinomial

    model = build_pyro(adata, guide)
    sampled = []
    original = LibraryNegativeBinomial.sample
    LibraryNegativeBinomial.sample = lambda self, *a, **k: sampled.append(1) or original(self, *a, **k)
    try:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model.train(max_steps=2, batch_size=args.batch_size, n_particles=args.particles,
                        val_every=10**9, progress=False)
    finally:
        LibraryNegativeBinomial.sample = original
    B, S, G, H = args.batch_size, args.particles, N_GENES, N_HIDDEN
    ops = [(e.name, [tuple(shape) for shape in e.input_shapes]) for e in prof.events()]
    draws = sorted({name for name, _ in ops if any(w in name for w in ("poisson", "gamma_", "binomial"))})
    gammas = {shape for name, shapes in ops if name in ("aten::lgamma", "aten::digamma") for shape in shapes}
    expression = [shapes for name, shapes in ops if name == "aten::addmm" and (G, H) in shapes]
    checks = {
        "x never sampled": not sampled and not draws,
        f"log-gamma terms only on (B, G) = {(B, G)}, seen {sorted(gammas)}": gammas <= {(B, G), (G,)},
        f"encoder expression block on (B, G), never on (S * B, G); seen {sorted({s[1] for s in expression})}":
            any(shapes[1] == (B, G) for shapes in expression) and all(shapes[1] != (S * B, G) for shapes in expression),
        "library and dispersion terms never broadcast over particles (no (S, B, 1) op (G,))": not any(
            (S, B, 1) in shapes and (G,) in shapes for _, shapes in ops),
        "decoder runs on the S x B particle-cells": any(
            name == "aten::addmm" and (S * B, H) in shapes and (H, G) in shapes for name, shapes in ops),
    }
    for what, ok in checks.items():
        print(f"[{'ok' if ok else 'FAIL'}] {guide}: {what}", flush=True)
    if not all(checks.values()):
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------- reference
def reference_module(n_genes: int, n_perturbations: int, x_mean, x_std, guide: str):
    """The SAMS-VAE parameters as plain ``nn.Linear`` / ``nn.Parameter`` (same shapes as the Pyro modules)."""
    import torch
    from torch import nn

    K, H, T = N_LATENT, N_HIDDEN, n_perturbations
    m = nn.Module()
    m.dec_in, m.dec_out = nn.Linear(K, H), nn.Linear(H, n_genes)
    m.log_theta = nn.Parameter(torch.zeros(n_genes))
    m.enc_x, m.enc_offset, m.enc_out = nn.Linear(n_genes, H), nn.Linear(K, H, bias=False), nn.Linear(H, 2 * K)
    m.mask_logits = nn.Parameter(torch.zeros(T, K))
    if guide == "mean_field":
        m.E_loc, m.E_log_scale = nn.Parameter(torch.zeros(T, K)), nn.Parameter(torch.zeros(T, K))
    else:  # q(e_t | m_t) = Normal(f([m_t, onehot(t)])), f: 2 x 200
        m.code = nn.Parameter(torch.empty(T, 200).uniform_(-0.07, 0.07))
        m.emb_in, m.emb_hidden, m.emb_out = nn.Linear(K, 200), nn.Linear(200, 200), nn.Linear(200, 2 * K)
    m.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32))
    m.register_buffer("x_std", torch.as_tensor(x_std, dtype=torch.float32))
    return m


def reference_loss(m, batch, n_particles: int, mask_prior_prob: float = 0.01):
    """-ELBO per cell (plated weighting), the computation the Pyro program performs, written by hand."""
    import torch
    import torch.nn.functional as F

    act = F.leaky_relu
    x, D, library, N = batch["x"], batch["D"], batch["library"], batch["n_cells"]
    B = x.shape[0]
    T, K = m.mask_logits.shape
    S = n_particles
    # q(M): straight-through Gumbel-sigmoid, scored by the Bernoulli log-probability of the hard sample
    u = torch.rand(S, T, K).clamp(torch.finfo(torch.float32).tiny, 1 - 1e-7)
    soft = torch.sigmoid(m.mask_logits + u.log() - torch.log1p(-u))
    mask = soft + ((soft > 0.5).float() - soft).detach()
    log_qm = -F.binary_cross_entropy_with_logits(m.mask_logits.expand(S, T, K), mask, reduction="none")
    log_pm = mask * math.log(mask_prior_prob) + (1 - mask) * math.log1p(-mask_prior_prob)
    # q(E | .)
    if hasattr(m, "E_loc"):
        e_loc, e_scale = m.E_loc, m.E_log_scale.exp() + 1e-4
    else:
        h = act(m.emb_in(mask) + m.code)
        h = h + act(m.emb_hidden(h))
        e_loc, e_logvar = m.emb_out(h).chunk(2, -1)
        e_scale = torch.sqrt(e_logvar.exp() + 1e-4)
    eps = torch.randn(S, T, K)
    E = e_loc + e_scale * eps
    log_qe = (-0.5 * eps**2 - e_scale.log() - 0.5 * math.log(2 * math.pi)).expand(S, T, K)
    log_pe = -0.5 * E**2 - 0.5 * math.log(2 * math.pi)
    global_terms = (log_pm - log_qm + log_pe - log_qe).sum((-1, -2))  # (S,)
    # q(z_basal | x, offset): x block once per cell, offset block per particle
    offset = D @ (E * mask)  # (S, B, K)
    x_tilde = (torch.log1p(x) - m.x_mean) / m.x_std
    loc, logvar = m.enc_out(act(m.enc_x(x_tilde) + m.enc_offset(offset))).chunk(2, -1)
    scale = torch.sqrt(logvar.exp() + 1e-4)
    eps_z = torch.randn(S, B, K)
    z_basal = loc + scale * eps_z
    log_qz = (-0.5 * eps_z**2 - scale.log()).sum(-1)
    log_pz = (-0.5 * z_basal**2).sum(-1)
    # p(x | z, l): library-size NB, data-only terms once per cell
    log_rho = F.log_softmax(m.dec_out(act(m.dec_in(z_basal + offset))), -1)  # (S, B, G)
    theta = m.log_theta.exp()
    c = library.log().unsqueeze(-1) - m.log_theta  # log mu = log rho + log l; c = log l - log theta
    ll = (x * log_rho).sum(-1) - ((x + theta) * F.softplus(log_rho + c)).sum(-1)  # (S, B)
    ll = ll + (x * c + torch.lgamma(x + theta) - torch.lgamma(x + 1)).sum(-1) - torch.lgamma(theta).sum()
    local_terms = (ll + log_pz - log_qz).sum(-1) * (N / B)  # (S,)
    return -(global_terms + local_terms).mean() / N


def run_reference(adata, guide: str, args) -> dict:
    import torch

    model = build_pyro(adata, guide)  # only for its data, loader and normalisation statistics
    data = model.data
    ref = reference_module(data.n_genes, data.n_perturbations, data.x_mean, data.x_std, guide)
    del model
    from samsvae_pyro.data import MinibatchLoader

    loader = MinibatchLoader(data, data.indices("train"), batch_size=args.batch_size, shuffle=True, seed=0)
    opt = torch.optim.Adam(ref.parameters(), lr=3e-4, weight_decay=1e-6)
    torch.manual_seed(0)
    stamps, step = [], 0
    while step < args.steps:
        for batch in loader:
            if step >= args.steps:
                break
            opt.zero_grad(set_to_none=True)
            loss = reference_loss(ref, batch, args.particles)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 100.0)
            opt.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError("reference loss is not finite")
            stamps.append(stamp())
            step += 1
    return summarise(stamps, max(args.warmup, 1) - 1, args.batch_size)


# ---------------------------------------------------------------------------------------------- driver
def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    adata = make_data(args.data)
    kind, guide = args.worker.split(":")
    if kind in ("profile", "verify"):
        (profile_pyro if kind == "profile" else verify_pyro)(adata, guide, args)
        return
    result = (run_pyro if kind == "pyro" else run_reference)(adata, guide, args)
    result["peak_rss_mib"] = peak_rss_mib()
    result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else 0.0
    result["package"] = str(Path(sys.modules["samsvae_pyro"].__file__).resolve().parent)
    print("RESULT " + json.dumps(result))


def spawn(config: str, args) -> dict:
    """Run one configuration ``kind:guide`` in a fresh process; kind ``pyro@DIR`` imports the package from DIR."""
    env = dict(os.environ, **dict(item.split("=", 1) for item in args.env))
    kind, guide = config.split(":")
    if "@" in kind:
        kind, path = kind.split("@")
        env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--worker", f"{kind}:{guide}", "--steps", str(args.steps),
           "--threads", str(args.threads), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
           "--particles", str(args.particles), "--data", str(args.data), "--device", args.device]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    if "@" in config and not result["package"].startswith(str(Path(path).resolve())):
        raise RuntimeError(f"{config} imported samsvae_pyro from {result['package']}")
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guide", choices=(*GUIDES, "all"), default="all")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--warmup", type=int, default=5, help="steps dropped before taking the median (at least 1)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration (median of run medians)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--particles", type=int, default=5)
    p.add_argument("--no-reference", action="store_true", help="skip the plain-PyTorch reference")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cached .h5ad of the simulated dataset")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the worker processes, e.g. OMP_WAIT_POLICY=PASSIVE (repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="DIR",
                   help="also time the samsvae_pyro package found in DIR, e.g. an export of another commit (repeatable)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the Pyro model trains (cuda: also peak GPU memory; the reference stays on CPU)")
    p.add_argument("--profile", choices=GUIDES, help="print a torch.profiler table for this guide and exit")
    p.add_argument("--verify", action="store_true",
                   help="check that x is never sampled, the NB data terms are per cell and the encoder's "
                        "expression block is shared across particles, then exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.profile:
        args.worker = f"profile:{args.profile}"
        return worker(args)
    if args.verify:
        for guide in GUIDES:
            args.worker = f"verify:{guide}"
            worker(args)
        return
    if not args.data.exists():
        print(f"simulating the dataset into {args.data} ...", flush=True)
        make_data(args.data)
    guides = GUIDES if args.guide == "all" else (args.guide,)
    reference = not args.no_reference and args.device == "cpu"
    configs = [f"pyro:{g}" for g in guides] + ([f"reference:{g}" for g in guides] if reference else [])
    configs += [f"pyro@{path}:{g}" for path in args.compare for g in guides]
    results: dict[str, list[dict]] = {config: [] for config in configs}
    for _ in range(args.repeats):  # round robin, so that every configuration sees the same machine load
        for config in configs:
            results[config].append(spawn(config, args))
            r = results[config][-1]
            print(f"  {config}: {r['s_per_step']:.4f} s/step, CPU {r['cpu_s_per_step']:.3f} s/step, "
                  f"{r['peak_rss_mib']:.0f} MiB, peak GPU {r.get('peak_gpu_mib', 0.0):.0f} MiB, "
                  f"other work {r['other_cores']:.1f} cores", file=sys.stderr, flush=True)
    rows = []
    for config, runs in results.items():
        s = statistics.median(r["s_per_step"] for r in runs)
        cpu = statistics.median(r["cpu_s_per_step"] for r in runs)
        rows.append((config, s, args.batch_size / s, cpu, max(r["peak_rss_mib"] for r in runs),
                     [(round(r["s_per_step"], 3), round(r["other_cores"], 1)) for r in runs]))
    print(f"\n{args.steps} steps, batch {args.batch_size}, {args.particles} particles, "
          f"{args.threads} threads, median over steps {args.warmup + 1}..{args.steps} (x{args.repeats} runs)"
          + (f", env {' '.join(args.env)}" if args.env else ""))
    width = max(24, *(len(config) for config in configs))
    print(f"{'configuration':<{width}} {'s/step':>8} {'cells/s':>8} {'CPU s/step':>11} {'peak RSS MiB':>13}  runs (s/step, cores busy with other work)")
    for config, s, cps, cpu, rss, each in rows:
        print(f"{config:<{width}} {s:>8.4f} {cps:>8.0f} {cpu:>11.3f} {rss:>13.0f}  {each}")
    ref = {c.split(':')[1]: s for c, s, *_ in rows if c.startswith("reference")}
    for config, s, *_ in rows:
        kind, guide = config.split(":")
        if kind == "pyro" and guide in ref:
            print(f"Pyro / reference ({guide}): {s / ref[guide]:.2f}x")


if __name__ == "__main__":
    main()

"""Do the posterior predictive checks catch known misspecification? (issue 16)

Fits several runs to the same cells and checks each on the held-out test cells (``model.check``, both
modes, R replicates), printing the fraction of units flagged (predictive p < 0.01) per statistic:

* ``--data sim`` (count simulation with known truth, ``simulate_counts``: NB counts, inverse dispersion
  about 5): ``nb`` (the correct model), ``poisson`` (no overdispersion: the variance and zero-fraction
  checks should flag it), ``shuffled`` (NB trained on perturbation labels permuted across cells, checked
  on the true labels: the generative per-condition shift check should flag it), ``few_steps`` (NB after
  ``--few-steps`` steps: flagged almost everywhere);
* ``--data norman`` (the real Norman subset in ``../shared/data``): SAMS-VAE NB, SAMS-VAE Poisson,
  CPA-VAE NB.

Usage
-----
    OMP_NUM_THREADS=1 python benchmarks/ppc_misspecification.py --data sim --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/ppc_misspecification.py --data norman --steps 3000

Rows (one per data set, seed, run, mode, level, statistic) are appended to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from samsvae_pyro import CPAVAE, SAMSVAE, simulate_counts
from samsvae_pyro.evaluate.criticism.plots import (
    plot_condition_shifts, plot_observed_vs_replicated, plot_pvalue_histograms,
)

NORMAN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "norman2019_k562_subset.h5ad"
SIM_RUNS = ("nb", "poisson", "shuffled", "few_steps")
NORMAN_RUNS = ("sams_nb", "sams_poisson", "cpa_nb")
HEADLINE = [("gene", "mean"), ("gene", "variance"), ("gene", "zero_fraction"), ("gene", "cv"),
            ("cell", "detected_genes"), ("condition", "shift"), ("condition", "variance_change"),
            ("condition", "zero_fraction_change"), ("interaction", "interaction"),
            ("dataset", "mean_variance_slope"), ("dataset", "zero_fraction")]


def simulation(seed: int):
    adata = simulate_counts(n_perturbations=10, cells_per_perturbation=150, n_double=4, seed=seed)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return adata


def shuffled(adata, seed: int):
    """A copy whose perturbation labels are permuted across cells (splits kept), registered the same way."""
    copy = adata.copy()
    labels = copy.obs["perturbation"].to_numpy()
    copy.obs["perturbation"] = np.random.default_rng(seed).permutation(labels)
    return copy


def norman():
    import anndata as ad

    adata = ad.read_h5ad(NORMAN)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="ctrl", layer="counts")
    return adata


def fit(cls, adata, *, steps: int, likelihood: str, seed: int, args):
    model = cls(adata, n_latent=args.n_latent, n_hidden=args.n_hidden, likelihood=likelihood, device="cpu", seed=seed,
                guide_kwargs={"embedding_hidden": args.n_hidden} if cls is SAMSVAE else None,
                **({"mask_prior_prob": 0.1} if cls is SAMSVAE else {}))
    model.train(max_steps=steps, batch_size=256, lr=args.lr, val_every=max(steps // 5, 1), seed=seed, progress=False)
    return model


def runs(args, seed: int):
    """(name, trained model, AnnData of the checked test cells with the true labels)."""
    if args.data == "sim":
        adata = simulation(seed)
        test = adata[adata.obs["split"] == "test"].copy()
        yield "nb", fit(SAMSVAE, adata, steps=args.steps, likelihood="nb", seed=seed, args=args), test
        yield "poisson", fit(SAMSVAE, adata, steps=args.steps, likelihood="poisson", seed=seed, args=args), test
        yield "shuffled", fit(SAMSVAE, shuffled(adata, seed), steps=args.steps, likelihood="nb", seed=seed,
                              args=args), test
        yield "few_steps", fit(SAMSVAE, adata, steps=args.few_steps, likelihood="nb", seed=seed, args=args), test
    else:
        adata = norman()
        yield "sams_nb", fit(SAMSVAE, adata, steps=args.steps, likelihood="nb", seed=seed, args=args), None
        yield "sams_poisson", fit(SAMSVAE, adata, steps=args.steps, likelihood="poisson", seed=seed, args=args), None
        yield "cpa_nb", fit(CPAVAE, adata, steps=args.steps, likelihood="nb", seed=seed, args=args), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("sim", "norman"), default="sim")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--few-steps", type=int, default=20)
    parser.add_argument("--n-samples", type=int, default=20)
    parser.add_argument("--n-latent", type=int, default=8)
    parser.add_argument("--n-hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, default=Path("ppc_misspecification.csv"))
    parser.add_argument("--figures", type=Path, default=None, help="write the first seed's figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        start, checks = time.perf_counter(), {}
        for name, model, cells in runs(args, seed):
            trained = time.perf_counter()
            check = checks[name] = model.check(cells, split="test", n_samples=args.n_samples, seed=seed)
            checked = time.perf_counter()
            summary = check.summary().reset_index()
            summary = summary.assign(data=args.data, seed=seed, run=name, train_s=round(trained - start, 1),
                                     check_s=round(checked - trained, 2))
            summary.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)
            print(f"seed {seed} {name}: trained {trained - start:.0f} s, checked {checked - trained:.1f} s", flush=True)
            start = time.perf_counter()
        if args.figures is not None and seed == args.seeds[0]:
            write_figures(checks, args.figures / args.data)
    print_table(pd.read_csv(args.out), args.data)


def write_figures(checks: dict, folder: Path) -> None:
    """The three figure kinds for every run of one seed, each in both modes."""
    folder.mkdir(parents=True, exist_ok=True)
    for mode in ("in_sample", "generative"):
        for name, plot in (("gene_statistics", plot_observed_vs_replicated), ("condition_shifts", plot_condition_shifts),
                           ("pvalues", plot_pvalue_histograms)):
            plot(checks, mode=mode).savefig(folder / f"{name}_{mode}.png", dpi=70)


def print_table(rows: pd.DataFrame, data: str) -> None:
    """Mean +- sd over seeds of the flagged fraction of each headline statistic, and the coverage."""
    rows = rows[rows["data"] == data]
    keep = [f"{level}:{name}" for level, name in HEADLINE] + ["count:interval"]
    rows = rows.assign(key=rows["level"] + ":" + rows["statistic"])
    rows = rows[rows["key"].isin(keep)]
    value = rows["flagged"].where(rows["level"] != "count", rows["coverage_90"])
    table = rows.assign(value=value).groupby(["mode", "key", "run"], sort=False)["value"]
    summary = table.mean().map("{:.2f}".format) + table.std().map(lambda s: "" if np.isnan(s) else f" ± {s:.2f}")
    print("fraction of units with p < 0.01 (count:interval: 90% interval coverage), mean ± sd over seeds")
    print(summary.unstack("run").to_string())


if __name__ == "__main__":
    main()

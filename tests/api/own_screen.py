"""A small screen made by hand, as a lab would have it (not the package's simulator).

Each gene has a baseline expression; each of 8 single-gene perturbations changes 6 genes by a log2
fold change of about +-1.5; a pair changes the sum of its members' log fold changes; counts are negative
binomial with varying library sizes. Labels are gene symbols, pairs "A+B", controls "control"; the counts
are in X; there is no split column.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

TARGETS = ["KLF1", "CEBPA", "GATA1", "SPI1", "TAL1", "MYB", "RUNX1", "IKZF1"]
PAIRS = ["KLF1+CEBPA", "GATA1+SPI1", "TAL1+MYB"]


def own_screen(*, n_genes: int = 100, cells: int = 150, n_control: int = 400, seed: int = 0) -> ad.AnnData:
    """(cells per condition x 11 conditions + controls) x genes, raw counts in X."""
    rng = np.random.default_rng(seed)
    log_base = rng.normal(np.log(4.0), 1.0, n_genes)  # natural-log mean counts at library 1e3 x G / 1e3
    lfc = np.zeros((len(TARGETS), n_genes))
    for t in range(len(TARGETS)):
        genes = rng.choice(n_genes, 6, replace=False)
        lfc[t, genes] = rng.choice([-1, 1], 6) * rng.normal(1.5, 0.3, 6)
    conditions = ["control"] * n_control + [c for c in TARGETS + PAIRS for _ in range(cells)]
    shift = np.zeros((len(conditions), n_genes))
    for i, label in enumerate(conditions):
        for member in label.split("+"):
            if member != "control":
                shift[i] += lfc[TARGETS.index(member)]
    rate = np.exp(log_base + shift * np.log(2))  # (N, G)
    rate *= rng.lognormal(0.0, 0.3, (len(conditions), 1))
    theta = 8.0
    counts = rng.poisson(rng.gamma(theta, rate / theta)).astype(np.float32)
    obs = pd.DataFrame({"condition": conditions}, index=[f"cell{i}" for i in range(len(conditions))])
    return ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=[f"GENE{g}" for g in range(n_genes)]))

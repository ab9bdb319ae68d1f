"""Small files with the real schemas of the paper's datasets (Norman 2019, Replogle 2022), for tests
of the loaders and of the experiment configs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

NORMAN_CONDITIONS = ("control", "CEBPB", "CBL", "CNN1", "CBL+CNN1", "CEBPB+CBL")


def write_norman_file(path, *, conditions: Sequence[str] = NORMAN_CONDITIONS, cells_per_condition: int = 12,
                      n_genes: int = 8, seed: int = 0) -> AnnData:
    """The sc-pert "Norman processed" schema: log-normalised X, raw counts in layers["counts"] (sparse),
    obs guide_identity / guide_ids / perturbation_name and 0/1 guide_<GENE> columns, var highly_variable
    (every other gene). Poisson(2) counts; returns the AnnData written."""
    rng = np.random.default_rng(seed)
    labels = [c for c in conditions for _ in range(cells_per_condition)]
    counts = rng.poisson(2.0, size=(len(labels), n_genes)).astype(np.float32)
    members = [[] if c == "control" else sorted(c.split("+")) for c in labels]
    obs = pd.DataFrame(
        {
            "guide_identity": ["__".join(["_".join(m or ["NegCtrl10", "NegCtrl0"])] * 2) for m in members],
            "guide_ids": [",".join(m) for m in members],
            "perturbation_name": labels,
        },
        index=[f"AAAC{i:04d}-1" for i in range(len(labels))],
    )
    for gene in sorted({g for m in members for g in m}):
        obs[f"guide_{gene}"] = np.array([gene in m for m in members], dtype=np.uint8)
    normalised = sp.csr_matrix(np.log1p(1e4 * counts / np.maximum(counts.sum(1, keepdims=True), 1)))
    var = pd.DataFrame({"highly_variable": [True, False] * (n_genes // 2)},
                       index=[f"GENE{j}" for j in range(n_genes)])
    adata = AnnData(normalised, obs=obs, var=var, layers={"counts": sp.csr_matrix(counts)})
    adata.write_h5ad(path)
    return adata


def _guide_pair(target: str, i: int) -> str:
    if target == "non-targeting":
        return f"non-targeting_{i:05d}|non-targeting_{i + 1:05d}"
    return f"{target}_+_1000{i % 2}.23-P1P2|{target}_-_2000{i % 2}.23-P1P2"


def write_replogle_file(path, *, n_targets: int = 8, cells: int = 20, n_controls: int = 60, n_genes: int = 30,
                        effect_targets: int = 3) -> AnnData:
    """The Replogle K562 schema (genome-wide and filtered files alike): dense float32 counts, obs sgID_AB
    (two guide pairs per target) and gene, var gene_name, uns["pathways"]. The first ``effect_targets``
    targets raise genes 0-4 eightfold; returns the AnnData written."""
    rng = np.random.default_rng(1)
    targets = [f"T{t}" for t in range(n_targets) for _ in range(cells)] + ["non-targeting"] * n_controls
    order = rng.permutation(len(targets))
    genes = np.array(targets, dtype=object)[order]
    rate = np.full((len(genes), n_genes), 5.0)
    rate[np.isin(genes, [f"T{t}" for t in range(effect_targets)]), :5] *= 8
    obs = pd.DataFrame(
        {"sgID_AB": [_guide_pair(g, i) for i, g in enumerate(genes)], "gene": genes},
        index=[f"cell{i}" for i in range(len(genes))],
    )
    var = pd.DataFrame({"gene_name": [f"G{j}" for j in range(n_genes)]}, index=[f"ENSG{j:05d}" for j in range(n_genes)])
    adata = AnnData(rng.poisson(rate).astype(np.float32), obs=obs, var=var)
    adata.uns["pathways"] = {"EXOSOME": ["G1", "G2"]}
    adata.write_h5ad(path)
    return adata

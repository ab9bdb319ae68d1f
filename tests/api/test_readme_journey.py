"""A new user's path through the README with their own AnnData file (issue 6's done-when), at tiny size.

The file is what a lab would have: raw counts in ``layers["counts"]`` (log-normalised values in X), gene
symbols as var_names, an obs column ``condition`` with "control", single genes and one "A+B" pair, no split
column. The user registers it as the README's "Bring your own AnnData" says, trains, predicts a combination
that was never measured, writes the report and reads it.
"""

import json

import anndata as ad
import numpy as np

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.runs import evaluate_run


def own_file(path):
    sim = simulate_counts(n_latent=3, n_perturbations=4, n_genes=20, cells_per_perturbation=40, n_double=1, seed=3)
    singles = sorted({m for label in sim.obs["perturbation"].astype(str) for m in label.split("+")} - {"non-targeting"})
    names = {"non-targeting": "control", **dict(zip(singles, ["KLF1", "CEBPA", "GATA1", "SPI1"], strict=True))}
    condition = ["+".join(names[p] for p in label.split("+")) for label in sim.obs["perturbation"].astype(str)]
    counts = sim.X.toarray() if hasattr(sim.X, "toarray") else np.asarray(sim.X)
    adata = ad.AnnData(X=np.log1p(counts), obs={"condition": condition}, layers={"counts": counts})
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"GENE{g}" for g in range(adata.n_vars)]
    adata.write_h5ad(path)
    return path


def test_readme_journey_on_a_users_own_file(tmp_path):
    adata = ad.read_h5ad(own_file(tmp_path / "screen.h5ad"))
    measured = set(adata.obs["condition"])
    SAMSVAE.setup_anndata(adata, perturbation_key="condition", control_label="control", layer="counts")
    model = SAMSVAE(adata, n_latent=3, n_hidden=16, mask_prior_prob=0.2, device="cpu")
    model.train(max_steps=30, batch_size=64, lr=3e-3, progress=False)

    unseen = next(f"{a}+{b}" for a in ("KLF1", "CEBPA", "GATA1") for b in ("GATA1", "SPI1")
                  if a != b and f"{a}+{b}" not in measured and f"{b}+{a}" not in measured)
    cells = model.predict([unseen], n_cells=20)
    assert cells.n_obs == 20 and list(cells.var_names) == list(adata.var_names)
    assert set(cells.obs["perturbation"]) == {unseen} and "counts" in cells.layers

    report = evaluate_run(model, tmp_path / "report", n_particles=5, ate_draws=4, ate_samples_per_draw=4, plots=False)
    table = (tmp_path / "report" / "metrics.md").read_text()
    assert "| SAMSVAE (correlated) |" in table
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["iwelbo"]["mean"] == report["iwelbo"]["mean"]
    assert np.isfinite(report["iwelbo"]["mean"]) and report["ate"]["model"]["all"]["n_conditions"] >= 5

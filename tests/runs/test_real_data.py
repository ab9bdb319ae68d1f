"""Real Perturb-seq files of ../shared/data through the library as a user has them (issue 13), at tiny size.

Both files hold integer counts in ``layers["counts"]``, log-normalised values in ``X`` and labels in
``obs["perturbation"]`` ("ctrl" for control cells, "A+B" for pairs). The tests skip, saying why, where
``../shared/data`` is absent (a fresh clone has no ``../shared``).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from samsvae_pyro import SAMSVAE
from samsvae_pyro.data import held_out_conditions_split
from samsvae_pyro.runs import evaluate_run

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NORMAN, KANG = DATA / "norman2019_k562_subset.h5ad", DATA / "kang2018_pbmc_ifnb_subset.h5ad"
HELD_OUT = ["KLF1+MAP2K6", "MAP2K3+SLC38A2", "MAP2K3+MAP2K6", "MAPK1+TGFBR2", "KLF1+TGFBR2"]
EVALUATE = dict(n_particles=3, ate_draws=3, ate_samples_per_draw=3, plots=False)

pytestmark = pytest.mark.slow


def read(path: Path) -> ad.AnnData:
    if not path.exists():
        pytest.skip(f"{path.name} is not in {DATA} (the real data of ../shared/data is only on the project machine)")
    return ad.read_h5ad(path)


def test_norman_subset_holds_out_pairs_trains_evaluates_and_predicts(tmp_path):
    adata = read(NORMAN)
    x_before = adata.X.copy()
    adata.obs["split"] = held_out_conditions_split(adata.obs["perturbation"], HELD_OUT, control_label="ctrl")
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="ctrl", layer="counts",
                          split_key="split")
    model = SAMSVAE(adata, n_latent=4, n_hidden=32, device="cpu")
    history = model.train(max_steps=10, batch_size=256, lr=3e-3, progress=False)
    assert np.isfinite(history["train_loss"]).all()

    report = evaluate_run(model, tmp_path / "report", **EVALUATE)
    assert np.isfinite(report["iwelbo"]["mean"]) and report["iwelbo"]["split"] == "test"
    assert report["ate"]["subsets"]["unseen"]["n_conditions"] == len(HELD_OUT)
    for baseline in ("control_mean", "training_mean", "additive", "linear"):
        assert "skipped" not in report["ate"][baseline], baseline  # the targets are not measured genes
    assert report["ate"]["additive"]["unseen"]["n_skipped"] == 0

    cells = model.predict(["KLF1+MAP2K6"], mode="counterfactual")
    assert cells.n_obs == int((adata.obs["perturbation"] == "ctrl").sum())  # one per control cell
    assert model.mask_probabilities().shape == (model.data.n_perturbations, 4)
    assert (adata.X != x_before).nnz == 0  # the user's AnnData is not modified


def test_kang_subset_predicts_the_stimulation_per_cell_type(tmp_path):
    adata = read(KANG)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="ctrl", layer="counts")
    model = SAMSVAE(adata, n_latent=4, n_hidden=32, device="cpu")
    model.train(max_steps=5, batch_size=256, lr=3e-3, progress=False)
    report = evaluate_run(model, tmp_path / "report", **EVALUATE)
    assert np.isfinite(report["iwelbo"]["mean"]) and report["ate"]["model"]["all"]["n_conditions"] == 1

    cell_type = adata.obs["cell_type"].astype(str).value_counts().index[0]
    source = adata[(adata.obs["cell_type"] == cell_type) & (adata.obs["perturbation"] == "ctrl")]
    cells = model.predict(["IFNB"], mode="counterfactual", source=source)
    assert cells.n_obs == source.n_obs and cells.n_vars == adata.n_vars
    assert set(cells.obs["source_cell"]) == set(source.obs_names)

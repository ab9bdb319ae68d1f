"""The report's Systema section, cell-eval section and its --cell-eval switch (issue 13)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.runs import evaluate_run
from samsvae_pyro.runs import evaluation as evaluation_module
from samsvae_pyro.evaluate.cell_eval import cell_eval_version

CHEAP = dict(n_particles=4, ate_draws=4, ate_samples_per_draw=4, plots=False)


@pytest.fixture(scope="module")
def trained():
    adata = simulate_counts(n_perturbations=4, cells_per_perturbation=30, n_genes=15, n_double=2, seed=0)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    model = SAMSVAE(adata, n_latent=3, n_hidden=16, device="cpu")
    model.train(max_steps=6, batch_size=128, n_particles=2, progress=False)
    return model


def test_report_has_centred_metrics_for_the_model_and_every_baseline(trained, tmp_path):
    report = evaluate_run(trained, tmp_path, **CHEAP)
    centred = report["ate_centred"]
    for name in ("model", "training_mean", "additive"):
        assert set(centred[name]) >= {"all", "train"}
    assert centred["training_mean"]["all"]["pearson"] is None  # the perturbed mean is the reference itself
    assert -1 <= centred["model"]["all"]["delta_pearson"] <= 1
    text = (tmp_path / "metrics.md").read_text()
    assert "## Centred on the perturbed mean (Systema)" in text and "Systema's perturbed-mean baseline" in text
    assert "cell_eval" not in report


def test_cell_eval_needs_its_extra(trained, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation_module, "cell_eval_version", lambda: None)
    with pytest.raises(ValueError, match=r"samsvae-pyro\[eval\]"):
        evaluate_run(trained, tmp_path, cell_eval=True, **CHEAP)
    assert not (tmp_path / "metrics.json").exists()  # refused before any work


@pytest.mark.skipif(cell_eval_version() is None, reason='cell-eval is not installed (pip install "samsvae-pyro[eval]")')
@pytest.mark.cell_eval
@pytest.mark.slow
def test_cell_eval_scores_the_model_and_every_baseline(trained, tmp_path):
    report = evaluate_run(trained, tmp_path, cell_eval=True, **CHEAP)
    section = report["cell_eval"]
    assert section["version"].startswith("0.8") and section["profile"] == "minimal"
    scored = [name for name in ("model", "control_mean", "training_mean", "additive", "linear") if name in section]
    assert scored[:4] == ["model", "control_mean", "training_mean", "additive"]
    for name in scored:
        assert section[name]["all"]["n_conditions"] > 0
        assert np.isfinite(section[name]["all"]["mae"])
    assert -1 <= section["model"]["all"]["pearson_delta"] <= 1
    # a shared definition agrees: cell-eval's pearson_delta of the additive mean cells is our delta Pearson
    assert section["additive"]["clipped_fraction"] == 0.0 and section["model"]["clipped_fraction"] == 0.0
    ours = report["ate"]["additive"]["all"]["delta_pearson"]
    assert section["additive"]["all"]["pearson_delta"] == pytest.approx(ours, abs=1e-4)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["cell_eval"]["model"]["all"]["pearson_delta"] == pytest.approx(section["model"]["all"]["pearson_delta"])
    assert "## cell-eval" in (tmp_path / "metrics.md").read_text()

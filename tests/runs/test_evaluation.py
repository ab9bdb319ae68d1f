"""The evaluation report: files, JSON sections, Markdown table, and what is skipped when it does not apply."""

from __future__ import annotations

import json
import math

import anndata
import numpy as np
import pandas as pd
import pytest

from samsvae_pyro import SAMSVAE, simulate_counts, simulate_paper
from samsvae_pyro.runs import evaluate_run

CHEAP = dict(n_particles=4, ate_draws=4, ate_samples_per_draw=4)
PLOTS = ("ate_scatter", "per_condition_metrics", "mask_heatmap", "training_curves")


def _strict_json(text: str) -> dict:
    """json.loads that rejects NaN / Infinity (not valid JSON)."""
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=reject)


def _train(adata, **model_kwargs) -> SAMSVAE:
    model = SAMSVAE(adata, n_latent=3, n_hidden=16, device="cpu", **model_kwargs)
    model.train(max_steps=6, batch_size=128, n_particles=2, val_every=3, progress=False)
    return model


@pytest.fixture(scope="module")
def simulation():
    """Count simulation with two pairs; the pair P0+P2 only in the test split (an unseen combination)."""
    adata = simulate_counts(n_perturbations=4, cells_per_perturbation=30, n_genes=15, n_double=2,
                            n_ate_samples=100, seed=0)
    split = adata.obs["split"].astype(str).to_numpy()
    held_out = adata.uns["sams_truth"]["true_ate_conditions"][-1]
    split[(adata.obs["perturbation"] == held_out).to_numpy()] = "test"
    adata.obs["split"] = split
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return adata, held_out


@pytest.fixture(scope="module")
def report(simulation, tmp_path_factory):
    adata, _ = simulation
    out = tmp_path_factory.mktemp("report")
    model = _train(adata)
    return out, evaluate_run(model, out, truth=adata.uns["sams_truth"], **CHEAP), model


def test_report_files(report):
    out, metrics, _ = report
    for name in ("metrics.json", "metrics.md", "iwelbo_per_cell.csv", "per_condition_metrics.csv"):
        assert (out / name).is_file()
    for name in PLOTS:
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert _strict_json((out / "metrics.json").read_text()) == metrics


def test_report_iwelbo_section_matches_the_per_cell_file(report):
    out, metrics, model = report
    per_cell = pd.read_csv(out / "iwelbo_per_cell.csv", index_col=0)["iwelbo"]
    assert metrics["iwelbo"]["split"] == "test" and metrics["iwelbo"]["n_cells"] == len(per_cell)
    assert len(per_cell) == int((model.data.split == "test").sum())
    assert metrics["iwelbo"]["mean"] == pytest.approx(per_cell.mean(), rel=1e-5)
    assert metrics["iwelbo"]["mean"] < 0


def test_report_ate_sections(report, simulation):
    out, metrics, _ = report
    _, held_out = simulation
    ate = metrics["ate"]
    assert ate["subsets"]["all"]["n_conditions"] == 6 and ate["subsets"]["unseen"]["n_conditions"] == 1
    for name in ("model", "control_mean", "training_mean", "additive"):
        assert set(ate[name]) == {"all", "train", "val", "test", "unseen"}
        assert ate[name]["all"]["n_conditions"] == 6
    assert math.isfinite(ate["model"]["all"]["pearson"]) and -1 <= ate["model"]["all"]["pearson"] <= 1
    assert ate["control_mean"]["all"]["pearson"] is None  # constant prediction: undefined, written as null
    assert "target" in ate["linear"]["skipped"]  # perturbation names are not gene names here
    model_ate, data_ate = anndata.read_h5ad(out / "ate_model.h5ad"), anndata.read_h5ad(out / "ate_data.h5ad")
    assert held_out in model_ate.obs_names and list(model_ate.obs_names) == list(data_ate.obs_names)
    assert (model_ate.layers["lower"] <= model_ate.layers["upper"]).all()


def test_report_truth_section(report):
    _, metrics, _ = report
    truth = metrics["truth"]
    assert {"precision", "recall", "f1", "auroc"} <= set(truth["mask_recovery"])
    assert 0 <= truth["coverage"]["coverage"] <= 1 and truth["coverage"]["n_conditions"] == 6
    assert truth["data_vs_true_ate"]["pearson"] > 0.5  # the data ATE tracks the simulated truth


def test_report_markdown(report):
    out, metrics, _ = report
    text = (out / "metrics.md").read_text()
    assert "| SAMSVAE (correlated) |" in text and "| additive |" in text and "| training mean |" in text
    assert "mask F1" in text and "90% coverage" in text and "ATE r unseen" in text
    assert f"{metrics['iwelbo']['mean']:.1f}" in text
    assert "linear" in text.split("## Not evaluated")[1]


def test_report_without_truth_or_plots(simulation, report, tmp_path):
    _, _, model = report
    metrics = evaluate_run(model, tmp_path, plots=False, **CHEAP)
    assert "skipped" in metrics["truth"] and metrics["plots"] == {"skipped": "plots=False"}
    assert not list(tmp_path.glob("*.png"))
    assert "mask F1" not in (tmp_path / "metrics.md").read_text()


def test_report_without_held_out_cells_or_history(simulation, tmp_path):
    adata, _ = simulation
    adata = adata.copy()
    adata.obs["split"] = "train"
    model = _train(adata)
    model.history = None
    metrics = evaluate_run(model, tmp_path, **CHEAP)
    assert "no test or validation cells" in metrics["iwelbo"]["skipped"]
    assert "no training history" in metrics["plots"]["training_curves"]["skipped"]
    assert metrics["ate"]["subsets"]["val"]["n_conditions"] == 0
    assert "IWELBO" in (tmp_path / "metrics.md").read_text()


def test_report_on_continuous_data_uses_the_mean_ate(tmp_path):
    adata = simulate_paper(n_perturbations=3, n_genes=10, cells_per_perturbation=(20, 5, 5), seed=0)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="control", split_key="split")
    model = _train(adata, likelihood="normal")
    metrics = evaluate_run(model, tmp_path, truth=adata.uns["sams_truth"], plots=False, **CHEAP)
    assert metrics["settings"]["ate_method"] == "mean"
    assert "f1" in metrics["truth"]["mask_recovery"] and "no true ATE" in metrics["truth"]["coverage"]["skipped"]
    assert np.isfinite(metrics["ate"]["model"]["all"]["pearson"])

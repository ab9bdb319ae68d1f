"""The evaluation report: files, JSON sections, Markdown table, and what is skipped when it does not apply."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="control", split_key="split",
                          count_data=False)
    model = _train(adata, likelihood="normal")
    metrics = evaluate_run(model, tmp_path, truth=adata.uns["sams_truth"], plots=False, **CHEAP)
    assert metrics["settings"]["ate_method"] == "mean"
    assert "f1" in metrics["truth"]["mask_recovery"] and "no true ATE" in metrics["truth"]["coverage"]["skipped"]
    assert np.isfinite(metrics["ate"]["model"]["all"]["pearson"])


def test_report_calibration_section(report):
    out, metrics, _ = report
    calibration = metrics["calibration"]
    assert calibration["split"] == "test"
    for kind in ("predictive", "population"):  # held-out cells' data ATE (b); the true ATE (a)
        coverage = calibration[kind]["coverage"]
        assert sorted(float(level) for level in coverage) == [0.5, 0.8, 0.9, 0.95]
        assert all(0 <= value <= 1 for value in coverage.values())
        assert {"pearson", "slope", "calibration_slope"} <= set(calibration[kind])
    table = pd.read_csv(out / calibration["file"], index_col=0)
    assert len(table) == calibration["predictive"]["n_conditions"] and "coverage_90" in table
    assert (out / calibration["plot"]).read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- issue 17: a report a biologist can read


def test_report_reads_for_a_biologist(report, simulation):
    out, metrics, _ = report
    _, held_out = simulation
    text = (out / "metrics.md").read_text()
    assert "## How to read this report" in text and "log2 fold change of expression" in text
    assert "docs/model.md" in text and "rank" in text.split("## Summary")[0]
    assert "Held out of training (1 condition, " in text and held_out in text.split("## How to read")[0]
    subsets = metrics["ate"]["subsets"]
    assert subsets["unseen"]["conditions"] == [held_out]
    assert subsets["val"]["same_as"] == "train" and subsets["test"]["same_as_all"]  # repeats, not shown again
    detail = text.split("## Model ATE metrics by condition subset")[1].split("##")[0]
    assert "| train |" in detail and "| val |" not in detail and "| test |" not in detail
    assert "ATE r val" not in text and "Not repeated: val (the same conditions as train)" in text
    genes = text.split("## Top responding genes")[1]
    first = genes.split("\n| ")[2]  # the first condition row: the held-out one
    assert first.startswith(f"{held_out} (held out)") and metrics["top_genes"][0]["held_out"]
    assert len(metrics["top_genes"][0]["genes"]) == 5


def test_an_untrained_model_is_flagged_in_the_report_and_on_stdout(simulation, tmp_path):
    from samsvae_pyro.runs.render import evaluation_summary

    adata, _ = simulation
    model = SAMSVAE(adata, n_latent=3, n_hidden=16, device="cpu")
    metrics = evaluate_run(model, tmp_path, plots=False, **CHEAP)
    assert metrics["model"]["trained_steps"] == 0 and "trained for 0 steps" in metrics["warnings"][0]
    assert "## Warnings" in (tmp_path / "metrics.md").read_text()
    printed = evaluation_summary(metrics, tmp_path)
    assert any(line.startswith("warning: The model was trained for 0 steps") for line in printed)
    assert not any("control mean" in line or "undefined" in line for line in printed)


def test_a_model_below_a_baseline_is_warned_about():
    from samsvae_pyro.runs.findings import report_warnings

    def scores(all_r, unseen_r):
        return {"all": {"pearson": all_r}, "unseen": {"pearson": unseen_r}}

    report = {"model": {"trained_steps": 300}, "ate": {
        "subsets": {"all": {"n_conditions": 10}, "unseen": {"n_conditions": 2}},
        "model": scores(0.18, 0.5), "training_mean": scores(0.34, 0.1), "additive": scores(0.1, 0.7),
        "linear": {"skipped": "no target genes"}, "control_mean": scores(None, None)}}
    warnings = report_warnings(report)
    assert len(warnings) == 2
    assert "all conditions, the model's ATE r (0.180) is below the training mean baseline's (0.340)" in warnings[0]
    assert "held out of training" in warnings[1] and "additive" in warnings[1]
    report["ate"]["model"] = scores(0.9, 0.9)
    assert report_warnings(report) == []


def test_interpretation_summary_counts_in_words():
    from samsvae_pyro.runs.render import interpretation_summary

    lines = interpretation_summary({"files": [], "n_clusters_found": 1, "n_perturbations": 5,
                                    "grouping": {"skipped": "no groups"}}, Path("out"))
    assert "1 cluster of 5 perturbations" in lines[0]


def test_report_markdown_has_the_calibration_table(report):
    out, metrics, _ = report
    text = (out / "metrics.md").read_text().split("## Calibration of the ATE intervals")[1]
    assert "| (b) posterior-predictive intervals vs the test cells' data ATE |" in text
    assert "| (a) population intervals vs the true ATE |" in text and "calibration slope" in text

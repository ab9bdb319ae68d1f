"""End to end on the count simulation: data ATE against the known ATE, baselines against the data ATE."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.data import build_perturbation_data, simulate_counts
from samsvae_pyro.evaluate import (
    additive_baseline,
    ate_anndata,
    ate_metrics,
    data_ate,
    training_mean_baseline,
)


@pytest.fixture(scope="module")
def simulation():
    adata = simulate_counts(
        n_perturbations=6, cells_per_perturbation=150, n_double=3, n_ate_samples=500, seed=0
    )
    data = build_perturbation_data(
        adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split"
    )
    return adata, data


def test_data_ate_recovers_the_simulated_ate(simulation):
    adata, data = simulation
    truth = adata.uns["sams_truth"]
    known = ate_anndata(truth["true_ate"], truth["true_ate_conditions"], adata.var_names)
    scores = ate_metrics(data_ate(data), known, split_columns=()).loc["all"]
    assert scores["n_conditions"] == 9 and scores["pearson"] > 0.9 and scores["rank"] < 0.1


def test_additive_beats_training_mean_on_pairs(simulation):
    _, data = simulation
    ate = data_ate(data)
    pairs = ate[[label for label in ate.obs_names if "+" in label]].copy()
    additive = ate_metrics(additive_baseline(data, pairs), pairs).loc["all"]
    mean = ate_metrics(training_mean_baseline(data, pairs), pairs).loc["all"]
    assert additive["n_skipped"] == 0
    assert additive["pearson"] > mean["pearson"] and additive["mse_top20"] < mean["mse_top20"]
    assert np.isfinite(additive[["r2", "delta_pearson", "rank"]].to_numpy(dtype=float)).all()

"""cell-eval adapter: the layout we hand it, and agreement of a metric both sides define the same way."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from samsvae_pyro.data import build_perturbation_data, simulate_counts
from samsvae_pyro.evaluate import additive_baseline, ate_anndata, data_ate, per_condition_metrics
from samsvae_pyro.evaluate.cell_eval import (
    PERTURBATION_COLUMN,
    cell_eval_version,
    lognormal_cells,
    mean_cells,
    observed_cells,
    summarise,
)

needs_cell_eval = pytest.mark.skipif(
    cell_eval_version() is None, reason='cell-eval is not installed (pip install "samsvae-pyro[eval]")'
)
CONTROL = "non-targeting"
SETUP = dict(perturbation_key="perturbation", control_label=CONTROL, split_key="split")


@pytest.fixture(scope="module")
def real_and_other():
    """A small simulation and a second set of cells with the same labels and different counts."""
    adata = simulate_counts(n_perturbations=4, n_genes=30, cells_per_perturbation=40, n_double=2, seed=0)
    other = adata.copy()
    counts = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    scale = np.random.default_rng(2).uniform(0.5, 1.5, counts.shape[1])
    other.X = np.random.default_rng(1).poisson(counts * scale).astype(np.float32)
    return build_perturbation_data(adata, **SETUP), build_perturbation_data(other, **SETUP)


def test_layout_is_log1p_of_counts_normalised_to_1e4():
    counts = np.array([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    cells = lognormal_cells(sp.csr_matrix(counts), ["A", "ctrl"], ["g0", "g1", "g2"])
    np.testing.assert_allclose(cells.X.toarray(), [[math.log1p(2500.0), 0.0, math.log1p(7500.0)], [0, 0, 0]],
                               rtol=1e-6)
    assert list(cells.obs[PERTURBATION_COLUMN]) == ["A", "ctrl"]


def test_mean_cells_put_control_mean_plus_the_ate_in_natural_log_units():
    control = lognormal_cells(np.array([[1.0, 3.0], [3.0, 1.0]]), ["ctrl", "ctrl"], ["g0", "g1"])
    ate = ate_anndata(np.array([[1.0, -20.0], [np.nan, 0.0]]), ["A", "B"], ["g0", "g1"])
    cells = mean_cells(control, ate, {"A": 3, "B": 5})
    predicted = cells[cells.obs[PERTURBATION_COLUMN] == "A"]
    mean = np.asarray(control.X).mean(axis=0)
    assert predicted.n_obs == 3 and "B" not in set(cells.obs[PERTURBATION_COLUMN])  # NaN row left out
    np.testing.assert_allclose(predicted.X[0], [mean[0] + math.log(2), 0.0], rtol=1e-6)  # g1 clipped at 0
    assert cells.uns["clipped_fraction"] == pytest.approx(0.5)
    assert (cells.obs[PERTURBATION_COLUMN] == "ctrl").sum() == 2


def test_observed_cells_keep_the_conditions_asked_for_and_the_controls(real_and_other):
    data, _ = real_and_other
    cells = observed_cells(data, ["P0"])
    assert set(cells.obs[PERTURBATION_COLUMN]) == {"P0", CONTROL}
    assert cells.n_vars == data.n_genes


def test_summarise_averages_per_subset():
    import pandas as pd

    table = pd.DataFrame({"m": [1.0, 3.0, 5.0]}, index=["a", "b", "c"])
    assert summarise(table, {"all": ["a", "b", "c"], "two": ["a", "c", "zz"], "none": ["zz"]}) == {
        "all": {"n_conditions": 3, "m": 3.0}, "two": {"n_conditions": 2, "m": 3.0}, "none": {"n_conditions": 0}}


@needs_cell_eval
@pytest.mark.cell_eval
@pytest.mark.slow
def test_cell_eval_pearson_delta_equals_our_delta_pearson_on_the_same_cells(real_and_other):
    from samsvae_pyro.evaluate.cell_eval import cell_eval_metrics

    data, other = real_and_other
    truth = data_ate(data)
    conditions = list(truth.obs_names)
    theirs = cell_eval_metrics(observed_cells(data, conditions), observed_cells(other, conditions),
                               control_label=CONTROL)
    ours = per_condition_metrics(data_ate(other), truth)["pearson"]
    assert len(theirs) == len(conditions)
    np.testing.assert_allclose(theirs["pearson_delta"], ours.loc[theirs.index], atol=1e-5)
    assert ours.std() > 0.005  # the check compares values that differ between conditions

    # a baseline's ATE handed over as mean cells: the same agreement
    real = observed_cells(data, conditions)
    additive = additive_baseline(data, truth)
    predicted = mean_cells(real[real.obs[PERTURBATION_COLUMN] == CONTROL], additive, 20)
    kept = list(set(predicted.obs[PERTURBATION_COLUMN]))
    theirs = cell_eval_metrics(real[real.obs[PERTURBATION_COLUMN].isin(kept)], predicted, control_label=CONTROL)
    assert predicted.uns["clipped_fraction"] == 0.0
    np.testing.assert_allclose(theirs["pearson_delta"],
                               per_condition_metrics(additive, truth)["pearson"].loc[theirs.index], atol=1e-5)
    for column in ("mse", "mae", "discrimination_score_l1", "overlap_at_N"):
        assert column in theirs


def test_missing_control_is_named(real_and_other):
    from samsvae_pyro.evaluate.cell_eval import _check_pair

    data, _ = real_and_other
    cells = observed_cells(data, ["P0"])
    with pytest.raises(ValueError, match="no control cells"):
        _check_pair(cells, cells, "ctrl")

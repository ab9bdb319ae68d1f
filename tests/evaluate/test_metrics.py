"""ATE metrics, E-distance and interval coverage on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.evaluate import (
    ate_anndata,
    ate_metrics,
    energy_distance,
    interval_coverage,
    per_condition_metrics,
)


def test_identical_prediction_is_perfect(rng, random_ate):
    truth = random_ate(rng)
    table = ate_metrics(truth, truth, top_k=5)
    assert list(table.index) == ["all", "train", "val", "test"]
    perfect = table.loc[["all", "train", "test"]]
    np.testing.assert_allclose(perfect[["pearson", "r2", "pearson_top5", "r2_top5", "delta_pearson"]], 1.0)
    np.testing.assert_allclose(perfect[["mse_top5", "rank"]], 0.0)
    assert table.loc["all", "n_conditions"] == 6 and table.loc["train", "n_conditions"] == 3


def test_empty_subset_keeps_a_row_with_nan_metrics(rng, random_ate):
    truth = random_ate(rng)
    row = ate_metrics(truth, truth).loc["val"]
    assert row["n_conditions"] == 0 and row["n_skipped"] == 0
    assert np.isnan(row[["pearson", "r2", "delta_pearson", "rank"]].to_numpy(dtype=float)).all()


def test_shuffled_prediction_is_worse(rng, random_ate):
    truth = random_ate(rng, n_conditions=8)
    shuffled = ate_anndata(truth.X[::-1], truth.obs_names, truth.var_names)
    row = ate_metrics(shuffled, truth).loc["all"]
    assert row["pearson"] < 0.5 and row["r2"] < 0.5 and row["rank"] > 0.3 and row["mse_top20"] > 0.5


def test_hand_computed_values():
    truth = ate_anndata([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], ["A", "B"], ["x", "y", "z"])
    pred = ate_anndata([[1.0, 2.0, 4.0], [3.0, 2.0, 1.0]], ["A", "B"], ["x", "y", "z"])
    row = ate_metrics(pred, truth, top_k=1, split_columns=()).loc["all"]
    assert row["r2"] == pytest.approx(1 - 1 / 4)  # SSE 1, SST 4 around the mean 2
    p, t = pred.X.ravel(), truth.X.ravel()
    assert row["pearson"] == pytest.approx(np.corrcoef(p, t)[0, 1])
    assert row["mse_top1"] == pytest.approx(0.5)  # A's top gene is z (error 1), B's is x (error 0)
    per = per_condition_metrics(pred, truth, top_k=1)
    assert per.loc["A", "pearson"] == pytest.approx(np.corrcoef([1, 2, 4], [1, 2, 3])[0, 1])
    assert per["rank"].tolist() == [0.0, 0.0]


def test_rank_counts_closer_other_truths():
    truth = ate_anndata([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], ["A", "B", "C"], ["x", "y"])
    pred = ate_anndata([[0.9, 0.0], [1.0, 0.0], [0.0, 0.0]], ["A", "B", "C"], ["x", "y"])
    rank = per_condition_metrics(pred, truth)["rank"]
    assert rank.tolist() == [0.5, 0.0, 1.0]  # A's prediction is closer to B; C's to both A and B


def test_top_k_metrics_look_only_at_top_genes():
    truth = ate_anndata([[5.0, -4.0, 0.1, 0.2], [-3.0, 6.0, 0.3, 0.1]], ["A", "B"], list("wxyz"))
    pred = ate_anndata([[5.0, -4.0, 9.0, -9.0], [-3.0, 6.0, -7.0, 8.0]], ["A", "B"], list("wxyz"))
    row = ate_metrics(pred, truth, top_k=2, split_columns=()).loc["all"]
    assert row["pearson_top2"] == pytest.approx(1.0) and row["mse_top2"] == 0.0
    assert row["pearson"] < 0.5


def test_alignment_by_name_ignores_order_and_extras(rng, random_ate):
    truth = random_ate(rng)
    pred = random_ate(np.random.default_rng(1), n_conditions=7, n_genes=31)
    pred_truth_subset = pred[truth.obs_names[::-1], truth.var_names[::-1]].copy()
    expected = ate_metrics(pred, truth)
    reordered = ate_metrics(pred_truth_subset, truth)
    np.testing.assert_allclose(reordered.to_numpy(float), expected.to_numpy(float))


def test_misaligned_inputs_name_what_is_missing(rng, random_ate):
    truth = random_ate(rng)
    with pytest.raises(ValueError, match=r"conditions: \['c5'\]"):
        ate_metrics(truth[:5].copy(), truth)
    with pytest.raises(ValueError, match=r"genes: \['g29'\]"):
        ate_metrics(truth[:, :29].copy(), truth)
    with pytest.raises(ValueError, match="split columns"):
        ate_metrics(truth, random_ate(rng, splits=False))
    with pytest.raises(ValueError, match="top_k"):
        ate_metrics(truth, truth, top_k=0)


def test_nan_rows_are_skipped_and_counted(rng, random_ate):
    truth = random_ate(rng)
    values = truth.X.copy()
    values[[0, 4]] = np.nan
    pred = ate_anndata(values, truth.obs_names, truth.var_names)
    table = ate_metrics(pred, truth)
    assert table.loc["all", "n_skipped"] == 2 and table.loc["all", "n_conditions"] == 4
    assert table.loc["train", "n_skipped"] == 1 and table.loc["test", "n_skipped"] == 1
    assert table.loc["all", "pearson"] == pytest.approx(1.0) and table.loc["all", "rank"] == 0.0
    assert per_condition_metrics(pred, truth)["pearson"].isna().sum() == 2
    with pytest.raises(ValueError, match="NaN"):
        ate_metrics(ate_anndata(np.full(truth.shape, np.nan), truth.obs_names, truth.var_names), truth)


def test_energy_distance_zero_for_identical_positive_for_shifted(rng, random_ate):
    x = rng.normal(size=(200, 5))
    assert energy_distance(x, x) == 0.0
    assert energy_distance(x, x + 1.0) > 0.5
    assert energy_distance(np.zeros((1, 1)), np.full((1, 1), 3.0)) == pytest.approx(6.0)  # 2 E|X - Y| = 6
    big, shifted = rng.normal(size=(500, 3)), rng.normal(size=(500, 3)) + 2
    subsampled = energy_distance(big, shifted, max_cells=100, seed=1)
    assert subsampled == energy_distance(big, shifted, max_cells=100, seed=1)
    assert subsampled == pytest.approx(energy_distance(big, shifted), rel=0.3)
    with pytest.raises(ValueError, match="same number of columns"):
        energy_distance(x, x[:, :3])


def test_interval_coverage_arrays_and_aligned_anndata():
    truth = ate_anndata([[0.0, 1.0], [2.0, 3.0]], ["A", "B"], ["x", "y"])
    lower = ate_anndata([[2.5, 0.5], [-1.0, -1.0]], ["B", "A"], ["y", "x"])  # reordered on purpose
    upper = ate_anndata([[3.5, 2.5], [0.5, 0.5]], ["B", "A"], ["y", "x"])
    assert interval_coverage(lower, upper, truth) == 0.75  # A/y = 1.0 lies above its upper bound 0.5
    assert interval_coverage(np.zeros((2, 2)), np.full((2, 2), 1.5), truth.X) == 0.5
    with pytest.raises(ValueError, match="order"):
        interval_coverage(upper, lower, truth)
    with pytest.raises(ValueError, match="shape"):
        interval_coverage(np.zeros((1, 2)), np.ones((1, 2)), truth)

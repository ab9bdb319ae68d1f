"""Baselines on tiny designs where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.evaluate import (
    additive_baseline,
    ate_metrics,
    control_mean_baseline,
    data_ate,
    linear_baseline,
    training_mean_baseline,
)
from samsvae_pyro.evaluate.baselines import _gene_embedding


@pytest.fixture
def truth_and_train(tiny_data):
    return data_ate(tiny_data), data_ate(tiny_data, cells=tiny_data.indices("train"))


def test_control_and_training_mean(tiny_data, truth_and_train):
    truth, train = truth_and_train
    control = control_mean_baseline(truth)
    assert control.shape == truth.shape and not control.X.any()
    assert control.obs["in_test"].equals(truth.obs["in_test"])
    mean = training_mean_baseline(tiny_data, truth)
    np.testing.assert_allclose(mean.X, np.tile(train.X.mean(axis=0), (truth.n_obs, 1)))
    assert list(mean.obs_names) == list(truth.obs_names)


def test_additive_is_the_sum_of_training_singles(tiny_data, truth_and_train):
    truth, train = truth_and_train
    additive = additive_baseline(tiny_data, truth)
    single = {label: train[label].X[0] for label in ("A", "B", "C")}
    np.testing.assert_allclose(additive["A+C"].X[0], single["A"] + single["C"])
    np.testing.assert_allclose(additive["A+B"].X[0], single["A"] + single["B"])
    np.testing.assert_allclose(additive["B"].X[0], single["B"])
    assert additive.uns["undefined_conditions"] == ["A+D", "D"]  # D has no training single
    assert np.isnan(additive["D"].X).all()
    assert ate_metrics(additive, truth).loc["all", "n_skipped"] == 2


def test_baselines_follow_the_genes_of_truth_like(tiny_data, truth_and_train):
    truth, _ = truth_and_train
    subset = truth[:, ["gene3", "gene1"]].copy()
    full = additive_baseline(tiny_data, truth)
    np.testing.assert_allclose(additive_baseline(tiny_data, subset).X, full[:, [3, 1]].X)
    renamed = subset.copy()
    renamed.var_names = ["gene3", "unknown"]
    with pytest.raises(ValueError, match="unknown"):
        training_mean_baseline(tiny_data, renamed)


@pytest.fixture
def rank_one_data(make_data):
    """ATE of perturbation p_t (targeting gene g_t) = v * v[g_t], with mean-zero v over trained targets."""
    genes = ["g0", "g1", "g2", "g3", "g4", "g5", "h0"]
    v = np.array([2.0, -1.0, 1.0, -2.0, 3.0, 1.0, 2.0])
    base = np.full(len(genes), 20.0)
    labels, rows, splits = [], [], []
    for label, effect, split in [
        ("control", 0 * v, "train"), ("p0", 2 * v, "train"), ("p1", -1 * v, "train"), ("p2", 1 * v, "train"),
        ("p3", -2 * v, "train"), ("p4", 3 * v, "excluded"), ("Z", 0 * v, "train"),
    ]:  # fmt: skip
        labels += [label] * 2
        rows += [base + effect] * 2
        splits += [split] * 2
    return make_data(np.array(rows), labels, splits, var_names=genes), v


def test_linear_reproduces_a_rank_one_linear_truth(rank_one_data):
    data, v = rank_one_data
    truth = data_ate(data, method="mean", cells=np.arange(data.n_cells))
    targets = {f"p{t}": f"g{t}" for t in range(5)}
    for ridge, rtol in ((1e-9, 1e-6), (0.1, 1e-2)):
        for n_components in (1, 2):
            linear = linear_baseline(
                data, truth, n_components=n_components, ridge=ridge, target_genes=targets, method="mean"
            )
            np.testing.assert_allclose(linear["p4"].X[0], 3 * v, rtol=rtol)  # never seen in training
            trained = ["p0", "p1", "p2", "p3"]
            np.testing.assert_allclose(linear[trained].X, truth[trained].X, rtol=rtol)
    assert linear.uns["undefined_conditions"] == ["Z"]  # "Z" targets no measured gene


def test_linear_rejects_impossible_settings(rank_one_data):
    data, _ = rank_one_data
    truth = data_ate(data, method="mean")
    with pytest.raises(ValueError, match="n_components"):
        targets = {f"p{t}": f"g{t}" for t in range(5)}
        linear_baseline(data, truth, n_components=10, method="mean", target_genes=targets)
    with pytest.raises(ValueError, match="measured gene"):
        linear_baseline(data, truth, method="mean")  # no p_t names a gene, so nothing can be fitted
    with pytest.raises(ValueError, match="ridge"):
        linear_baseline(data, truth, ridge=-1.0)


@pytest.mark.parametrize("shape", [(30, 12), (12, 30)])  # more genes than conditions, and fewer
def test_gene_embedding_equals_the_top_principal_component_scores(rng, shape):
    centred = rng.normal(size=shape)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    embedding = _gene_embedding(centred, n_components=3)
    np.testing.assert_allclose(np.abs(embedding), np.abs(left[:, :3] * singular[:3]), atol=1e-10)

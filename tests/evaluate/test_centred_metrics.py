"""Systema's perturbed-mean baseline and metrics centred on it, on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.evaluate import (
    ate_anndata,
    ate_metrics,
    data_ate,
    linear_baseline,
    per_condition_metrics,
    perturbed_mean_baseline,
    perturbed_reference,
)


@pytest.fixture
def noise_free(make_data):
    """Identity-ATE design: control 10; singles A, B, C (train) with effects a, b, c; pair A+B (test) = a + b."""
    a, b, c = np.array([4.0, 0.0, 1.0, 0.0]), np.array([0.0, 2.0, 1.0, 0.0]), np.array([0.0, 0.0, -3.0, 5.0])
    rows = {"control": 0 * a, "A": a, "B": b, "C": c, "A+B": a + b}
    labels = [label for label in rows for _ in range(2)]
    splits = ["test" if label == "A+B" else "train" for label in labels]
    counts = np.array([10.0 + rows[label] for label in labels])
    return make_data(counts, labels, splits), (a, b, c)


def test_perturbed_reference_is_the_mean_of_the_training_perturbed_centroids(make_data):
    counts = np.array([[2.0, 4.0], [4.0, 2.0],  # control: centroid (3, 3)
                       [10.0, 3.0], [12.0, 3.0],  # A: centroid (11, 3)
                       [3.0, 9.0],  # B: centroid (3, 9)
                       [50.0, 50.0]])  # A+B: test only, not part of the reference
    data = make_data(counts, ["control", "control", "A", "A", "B", "A+B"], ["train"] * 5 + ["test"])
    truth = data_ate(data, method="mean")
    # mean of the training centroids (7, 6) minus the control centroid (3, 3)
    np.testing.assert_allclose(perturbed_reference(data, truth, method="mean"), [4.0, 3.0])
    baseline = perturbed_mean_baseline(data, truth, method="mean")
    np.testing.assert_allclose(baseline.X, [[4.0, 3.0]] * 3)


def test_centred_metrics_score_only_what_is_specific_to_each_condition():
    reference = np.array([3.0, -3.0, 2.0, -2.0])  # the shift every perturbation shares
    specific = np.array([[1.0, -0.5, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [-0.5, 1.0, 0.0, 0.5]])
    conditions, genes = ["c0", "c1", "c2"], ["g0", "g1", "g2", "g3"]
    truth = ate_anndata(reference + specific, conditions, genes)
    shared_only = ate_anndata(np.tile(reference, (3, 1)), conditions, genes)  # the perturbed-mean baseline
    scaled = ate_anndata(reference + 2 * specific, conditions, genes)

    # the shared shift alone earns a high Pearson of the changes from control ...
    assert (per_condition_metrics(shared_only, truth)["pearson"] > 0.9).all()
    # ... and nothing once centred (its centred rows are constant zero, so Pearson is undefined)
    assert per_condition_metrics(shared_only, truth, reference=reference)["pearson"].isna().all()
    # while a prediction right about each condition's specific part scores 1 once centred
    np.testing.assert_allclose(per_condition_metrics(scaled, truth, reference=reference)["pearson"], 1.0)
    table = ate_metrics(scaled, truth, split_columns=(), reference=reference)
    assert table.loc["all", "pearson"] == pytest.approx(1.0)
    # R^2 of the centred values: 1 - SSE / SST with SST of the specific parts
    expected_r2 = 1 - (specific**2).sum() / ((specific - specific.mean()) ** 2).sum()
    assert table.loc["all", "r2"] == pytest.approx(expected_r2)
    # top-k genes stay those of the change from control, and distances (MSE, rank) do not move
    uncentred = ate_metrics(scaled, truth, split_columns=(), top_k=2)
    centred_top = ate_metrics(scaled, truth, split_columns=(), top_k=2, reference=reference)
    assert centred_top.loc["all", "mse_top2"] == pytest.approx(uncentred.loc["all", "mse_top2"])
    assert centred_top.loc["all", "rank"] == pytest.approx(uncentred.loc["all", "rank"])


def test_reference_must_match_the_genes():
    truth = ate_anndata(np.ones((2, 3)), ["a", "b"], ["g0", "g1", "g2"])
    with pytest.raises(ValueError, match="one value per gene"):
        ate_metrics(truth, truth, split_columns=(), reference=np.zeros(2))


def test_linear_with_training_embedding_has_a_known_answer(noise_free):
    data, (a, b, c) = noise_free
    truth = data_ate(data, method="mean")
    linear = linear_baseline(data, truth, n_components=2, ridge=1e-9, embedding="training", method="mean")
    assert linear.uns["embedding"] == "training"
    np.testing.assert_allclose(linear[["A", "B", "C"]].X, np.stack([a, b, c]), atol=1e-6)
    # the pair: intercept + both members' centred scores = a + b - mean(a, b, c)
    np.testing.assert_allclose(linear["A+B"].X[0], a + b - (a + b + c) / 3, atol=1e-6)
    with pytest.raises(ValueError, match="embedding"):
        linear_baseline(data, truth, embedding="pca", method="mean")
    with pytest.raises(ValueError, match="embedding='training'"):
        linear_baseline(data, truth, n_components=2, method="mean")  # no target is a measured gene

"""Hungarian-matched mask scores and the mean correlation coefficient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samsvae_pyro.evaluate import mask_recovery, mean_correlation_coefficient


def true_mask(rng: np.random.Generator, n_perturbations: int = 12, n_latent: int = 8) -> np.ndarray:
    """Bernoulli(0.25) mask whose every column has a true entry."""
    mask = (rng.random((n_perturbations, n_latent)) < 0.25).astype(float)
    mask[0] = 1.0
    return mask


def test_truth_scores_perfectly_even_with_permuted_latents(rng):
    mask = true_mask(rng)
    permutation = rng.permutation(mask.shape[1])
    for estimate in (mask, mask[:, permutation]):
        scores = mask_recovery(mask, estimate)
        assert (scores["precision"], scores["recall"], scores["f1"], scores["auroc"]) == (1.0, 1.0, 1.0, 1.0)
    matching = mask_recovery(mask, mask[:, permutation])["matching"]
    assert (permutation[matching[:, 1]] == matching[:, 0]).all()


def test_soft_probabilities_give_auroc_one_when_they_rank_the_truth(rng):
    mask = true_mask(rng)
    soft = np.where(mask == 1, 0.3 + 0.1 * rng.random(mask.shape), 0.2 * rng.random(mask.shape))
    scores = mask_recovery(mask, soft[:, ::-1])
    assert scores["auroc"] == 1.0
    assert scores["fraction_on"] == 0.0 and np.isnan(scores["precision"]) and scores["recall"] == 0.0


def test_counts_unmatched_estimated_dims_in_precision():
    truth = np.array([[1, 0], [1, 0], [0, 1]])
    estimate = np.array([[0.9, 0.0, 0.8], [0.9, 0.0, 0.0], [0.0, 0.7, 0.0]])  # dim 2 matches nothing
    scores = mask_recovery(truth, estimate)
    assert scores["true_positives"] == 3.0
    assert scores["precision"] == pytest.approx(3 / 4) and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(6 / 7)
    assert scores["fraction_on"] == pytest.approx(4 / 9) and scores["fraction_true"] == pytest.approx(3 / 6)
    assert sorted(map(tuple, scores["matching"])) == [(0, 0), (1, 1)]


def test_random_posterior_auroc_is_well_above_one_half(rng):
    """The matching sees the scores, so chance level under it is about 0.73 (T = 12, K = 8, p = 0.25)."""
    aurocs = [mask_recovery(true_mask(rng), rng.random((12, 8)))["auroc"] for _ in range(200)]
    assert 0.68 < np.mean(aurocs) < 0.78


def test_dataframes_are_aligned_by_perturbation():
    mask = pd.DataFrame([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], index=list("abcd"))
    shuffled = mask.iloc[::-1]
    assert mask_recovery(mask, shuffled)["f1"] == 1.0
    assert mask_recovery(mask.to_numpy(), shuffled.to_numpy())["f1"] < 1.0  # positional rows disagree
    with pytest.raises(ValueError, match="lacks the perturbations"):
        mask_recovery(mask, shuffled.iloc[1:])


def test_bad_masks_are_rejected():
    with pytest.raises(ValueError, match="only 0 and 1"):
        mask_recovery(np.array([[0.5]]), np.array([[0.5]]))
    with pytest.raises(ValueError, match="probabilities"):
        mask_recovery(np.array([[1.0]]), np.array([[2.0]]))
    with pytest.raises(ValueError, match="one row per perturbation"):
        mask_recovery(np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="threshold"):
        mask_recovery(np.ones((2, 2)), np.ones((2, 2)), threshold=1.0)


def test_mean_correlation_coefficient(rng):
    z = rng.normal(size=(300, 4))
    assert mean_correlation_coefficient(z, -3 * z[:, [3, 1, 0, 2]] + 1) == pytest.approx(1.0)
    assert mean_correlation_coefficient(z, rng.normal(size=(300, 4))) < 0.2
    extra = np.column_stack([rng.normal(size=300), z[:, 0], np.ones(300)])  # K' != K, a constant column
    assert mean_correlation_coefficient(z[:, :1], extra) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same cells"):
        mean_correlation_coefficient(z, z[:10])


def test_identifiable_latents_on_hand_made_masks():
    from samsvae_pyro.evaluate import identifiable_latents

    # every latent has a perturbation acting on it alone: all identified
    assert identifiable_latents(np.eye(3)).tolist() == [True, True, True]
    # latents 0 and 1 always switched on together: neither can be told apart; latent 2 alone is fine
    together = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]])
    assert identifiable_latents(together).tolist() == [False, False, True]
    # intersections, not single rows: {0,1} and {0,2} pin 0; {0,1} and {1,2} pin 1; only {0,2},{1,2} act on 2
    chain = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    assert identifiable_latents(chain).tolist() == [True, True, True]
    # a latent nothing acts on is not identified
    assert identifiable_latents(np.array([[1, 0], [1, 0]])).tolist() == [True, False]
    with pytest.raises(ValueError, match="0/1"):
        identifiable_latents(np.array([[0.5, 1.0]]))


def test_effect_residuals_zero_for_rotations_and_positive_otherwise(rng):
    from samsvae_pyro.evaluate import effect_residuals

    true = rng.normal(size=(20, 4))
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    exact = effect_residuals(true @ rotation, true)
    assert exact["procrustes"] < 1e-10 and exact["linear"] < 1e-10
    # a stretched copy is a linear map of the truth but not a rotation of it
    stretched = effect_residuals(true * np.array([3.0, 1.0, 1.0, 1.0]), true)
    assert stretched["linear"] < 1e-10 and stretched["procrustes"] > 0.1
    # unrelated effects explain little of the truth
    noise = effect_residuals(rng.normal(size=(20, 4)), true)
    assert noise["linear"] > 0.5 and noise["procrustes"] > noise["linear"]
    with pytest.raises(ValueError, match="same shape"):
        effect_residuals(true[:, :3], true)

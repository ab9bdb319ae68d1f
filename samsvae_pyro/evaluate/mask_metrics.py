"""Mask and latent recovery scores for simulations with a known truth (docs/model.md, section 5, "Simulation scoring").

The latent dimensions of a fitted model are identified only up to permutation, so every score first
matches true to estimated dimensions with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`, rectangular when the numbers of dimensions differ).

- Thresholded scores (the paper's): the estimated mask is q(m) > threshold; the matching maximises the
  true positives; precision = TP / |M_est|, recall = TP / |M_true|, F1 = 2 TP / (|M_est| + |M_true|),
  where |M_est| counts every estimated-on entry, matched dimension or not.
- Threshold-free score (added): the matching maximises the soft agreement
  sum_t [m_tj q_tk + (1 - m_tj)(1 - q_tk)] between true column j and estimated column k, and the
  AUROC of q against m is taken over the entries of the matched column pairs only. The matching looks
  at the scores it is evaluated on, so even a posterior unrelated to the truth scores above 0.5
  (mean 0.73, 99th percentile 0.83 for T = 12, K = 8, mask density 0.25 and uniform random q).
- Identifiability of the truth (:func:`identifiable_latents`): the sufficient condition of the
  mechanism-sparsity literature (Lachapelle et al., CLeaR 2022): latent k is identified when the
  intersection of the target sets of all perturbations acting on k is {k}.
- Effect residuals (:func:`effect_residuals`): how far learned posterior-mean effects are from a
  rotation (orthogonal Procrustes) or any linear map of the true effects. A rotation is all the
  likelihood can pin down with an isotropic basal prior, so a large Procrustes residual means the
  representation itself is off, before any search for the sparse basis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import roc_auc_score


def mask_recovery(
    true_mask: np.ndarray | pd.DataFrame,
    mask_prob: np.ndarray | pd.DataFrame,
    *,
    threshold: float = 0.5,
) -> dict[str, float | np.ndarray]:
    """Hungarian-matched precision, recall, F1 and AUROC of an estimated mask q(m = 1) against the truth.

    Parameters
    ----------
    true_mask
        True 0/1 mask. When both inputs are DataFrames their rows are aligned by perturbation name.
    mask_prob
        Estimated probabilities q(m_tk = 1) in [0, 1].
    threshold
        An entry is estimated on when its probability exceeds this.

    Returns
    -------
    dict with precision, recall, f1 (NaN when undefined, e.g. precision with no estimated entry),
    auroc (NaN when the matched truth has a single class), fraction_on (share of estimated-on
    entries), fraction_true (share of true-on entries), true_positives, matching (the pairs
    (true dim, estimated dim) maximising true positives) and auroc_matching (the pairs maximising
    soft agreement).

    Shapes
    ------
    true_mask : (T, K_true). mask_prob : (T, K_est). matching, auroc_matching : (min(K_true, K_est), 2).

    Examples
    --------
    >>> truth = np.array([[1, 0], [0, 1], [1, 1]])
    >>> scores = mask_recovery(truth, truth[:, ::-1] * 0.9)
    >>> scores["f1"], scores["auroc"]
    (1.0, 1.0)
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold={threshold!r} must lie in [0, 1); the paper uses 0.5.")
    true, prob = _mask_arrays(true_mask, mask_prob)
    estimated = (prob > threshold).astype(float)
    positives = true.T @ estimated  # (K_true, K_est)
    matching = np.column_stack(linear_sum_assignment(positives, maximize=True))
    true_positives = float(positives[matching[:, 0], matching[:, 1]].sum())
    n_estimated, n_true = float(estimated.sum()), float(true.sum())
    agreement = true.T @ prob + (1 - true).T @ (1 - prob)  # (K_true, K_est)
    auroc_matching = np.column_stack(linear_sum_assignment(agreement, maximize=True))
    return {
        "precision": _ratio(true_positives, n_estimated),
        "recall": _ratio(true_positives, n_true),
        "f1": _ratio(2 * true_positives, n_estimated + n_true),
        "auroc": _auroc(true[:, auroc_matching[:, 0]], prob[:, auroc_matching[:, 1]]),
        "fraction_on": float(estimated.mean()),
        "fraction_true": float(true.mean()),
        "true_positives": true_positives,
        "matching": matching,
        "auroc_matching": auroc_matching,
    }


def mean_correlation_coefficient(z_true: np.ndarray, z_est: np.ndarray) -> float:
    """Mean |Pearson| between true and estimated latent dimensions after Hungarian matching.

    Parameters
    ----------
    z_true
        True latents of N cells.
    z_est
        Inferred latents of the same cells, in the same order; a constant dimension correlates 0.

    Returns
    -------
    The mean matched |r| over min(K, K') pairs, in [0, 1].

    Shapes
    ------
    z_true : (N, K). z_est : (N, K').

    Examples
    --------
    >>> z = np.random.default_rng(0).normal(size=(50, 3))
    >>> round(mean_correlation_coefficient(z, -2 * z[:, [2, 0, 1]]), 6)
    1.0
    """
    z_true, z_est = np.asarray(z_true, dtype=float), np.asarray(z_est, dtype=float)
    if z_true.ndim != 2 or z_est.ndim != 2 or len(z_true) != len(z_est) or len(z_true) < 2:
        raise ValueError(
            f"z_true {z_true.shape} and z_est {z_est.shape} must be 2-d, with the same cells (at least "
            "two) as rows."
        )
    correlation = np.abs(_standardised(z_true).T @ _standardised(z_est)) / len(z_true)  # (K, K')
    rows, columns = linear_sum_assignment(correlation, maximize=True)
    return float(correlation[rows, columns].mean())


def identifiable_latents(true_mask: np.ndarray | pd.DataFrame) -> np.ndarray:
    """Which latent dimensions a true mask identifies by sparsity (sufficient condition).

    For latent k, intersect the target sets {j : m_tj = 1} of all perturbations t with m_tk = 1;
    k is identifiable when the intersection is exactly {k}. A latent no perturbation acts on is not.

    Parameters
    ----------
    true_mask
        0/1 mask, perturbations by latent dimensions.

    Returns
    -------
    Boolean array, True where latent k is identifiable.

    Shapes
    ------
    true_mask : (T, K). Returns (K,).

    Examples
    --------
    >>> identifiable_latents(np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0]])).tolist()
    [True, True, False]
    """
    mask = np.asarray(true_mask, dtype=float)
    if mask.ndim != 2 or not np.isin(mask, (0.0, 1.0)).all():
        raise ValueError(f"true_mask {mask.shape} must be a 2-d 0/1 array (perturbations x latents).")
    acting = mask.T @ mask  # (K, K): number of perturbations acting on both k and j
    n_acting = np.diag(acting)  # (K,)
    shared = acting == n_acting[:, None]  # j is in every target set of the perturbations acting on k
    return (n_acting > 0) & (shared.sum(axis=1) == 1)


def effect_residuals(estimated: np.ndarray | pd.DataFrame, true: np.ndarray | pd.DataFrame) -> dict[str, float]:
    """Relative residuals of true effects explained by estimated effects through a rotation or a linear map.

    procrustes = min over orthogonal R of ||A R - B||_F / ||B||_F (signed permutations included);
    linear = min over any W of ||A W - B||_F / ||B||_F (least squares). A = estimated effects (e.g. the
    posterior means E_q[e * m]), B = true effects m * e. An exact rotation of the truth gives 0 for both.

    Parameters
    ----------
    estimated
        Estimated per-perturbation effects.
    true
        True per-perturbation effects, rows in the same order.

    Returns
    -------
    dict with "procrustes" and "linear", both in [0, 1] for the linear map and >= 0 for Procrustes.

    Shapes
    ------
    estimated : (T, K_est). true : (T, K). Procrustes needs K_est == K.

    Examples
    --------
    >>> b = np.random.default_rng(0).normal(size=(6, 3))
    >>> r = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    >>> {k: round(v, 8) for k, v in effect_residuals(b @ r, b).items()}
    {'procrustes': 0.0, 'linear': 0.0}
    """
    a, b = np.asarray(estimated, dtype=float), np.asarray(true, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b) or a.shape[1] != b.shape[1]:
        raise ValueError(f"estimated {a.shape} and true {b.shape} effects must be 2-d with the same shape "
                         "(perturbations x latents, same row order).")
    norm = np.linalg.norm(b)
    if norm == 0:
        raise ValueError("true effects are all zero; residuals relative to them are undefined.")
    u, _, vt = np.linalg.svd(a.T @ b)
    procrustes = np.linalg.norm(a @ (u @ vt) - b) / norm
    linear = np.linalg.norm(a @ np.linalg.lstsq(a, b, rcond=None)[0] - b) / norm
    return {"procrustes": float(procrustes), "linear": float(linear)}


def _mask_arrays(
    true_mask: np.ndarray | pd.DataFrame, mask_prob: np.ndarray | pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Validated float arrays, rows aligned by name when both inputs are DataFrames."""
    if isinstance(true_mask, pd.DataFrame) and isinstance(mask_prob, pd.DataFrame):
        missing = true_mask.index.difference(mask_prob.index)
        if len(missing):
            raise ValueError(
                f"mask_prob lacks the perturbations {list(missing[:5])} of true_mask; pass matching rows."
            )
        mask_prob = mask_prob.loc[true_mask.index]
    true, prob = np.asarray(true_mask, dtype=float), np.asarray(mask_prob, dtype=float)
    if true.ndim != 2 or prob.ndim != 2 or len(true) != len(prob):
        raise ValueError(
            f"true_mask {true.shape} and mask_prob {prob.shape} must be 2-d, with one row per "
            "perturbation each."
        )
    if not np.isin(true, (0.0, 1.0)).all():
        raise ValueError("true_mask must contain only 0 and 1.")
    if not (np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()):
        raise ValueError("mask_prob must contain probabilities in [0, 1]; pass q(m = 1), not logits.")
    return true, prob


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN for 0 / 0."""
    return numerator / denominator if denominator > 0 else float("nan")


def _auroc(true: np.ndarray, prob: np.ndarray) -> float:
    """AUROC of the scores against the 0/1 labels over all entries; NaN with a single class."""
    labels = true.ravel()
    if labels.min() == labels.max():
        return float("nan")
    return float(roc_auc_score(labels, prob.ravel()))


def _standardised(z: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance; constant columns become zero."""
    centred = z - z.mean(axis=0)
    scale = centred.std(axis=0)
    return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)

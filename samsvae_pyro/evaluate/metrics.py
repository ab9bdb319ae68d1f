"""Metrics between predicted and true ATE matrices, and between cell sets (docs/model.md, sections 5 and 8).

Section 5 (the paper): Pearson r and R^2 of the flattened (conditions x genes) ATE matrices, on all
genes and on each condition's top-20 genes by |true ATE|, for all conditions and per split.
Section 8 (the field now): Pearson of deltas per condition, top-20 MSE, a rank metric, E-distance.
Systema (Vinas Torne et al., 2025): the same metrics centred on a reference effect shared by every
condition (``reference=``, e.g. the mean of the perturbed cells' effects, see
:mod:`samsvae_pyro.evaluate.systema`), so that a prediction only scores for what is specific to each
condition.

Conventions:

- ``truth`` is the reference: its conditions, genes and split columns define what is scored; a
  prediction must cover them (extra conditions or genes in the prediction are ignored).
- A condition whose predicted or true row contains NaN (e.g. the additive baseline for a pair with an
  untrained member) is skipped; ``ate_metrics`` reports the count in ``n_skipped`` and
  ``per_condition_metrics`` gives it NaN metrics.
- Metric columns carry k in their names (``pearson_top20``, ``r2_top20``, ``mse_top20`` for
  ``top_k=20``), the same in both tables.
- A metric that is undefined (a constant vector for Pearson or R^2, fewer than two reference
  conditions for the rank) is NaN; condition means ignore NaN entries.
- With ``reference`` r, every metric compares pred - r with truth - r; each condition's top-k genes
  are still those of largest |truth| (the change from control, as Systema's top DE genes). Differences
  (MSE) and distances (rank) do not change; Pearson and R^2 do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.spatial.distance import cdist

from samsvae_pyro.evaluate.ate import SPLIT_COLUMNS

MIN_ABS_EFFECT = 0.5  # entries with |reference ATE| above this enter the slope


def ate_metrics(
    pred: AnnData,
    truth: AnnData,
    *,
    top_k: int = 20,
    split_columns: Sequence[str] = SPLIT_COLUMNS,
    reference: np.ndarray | None = None,
) -> pd.DataFrame:
    """ATE agreement per subset of conditions: all, and each split flag of ``truth.obs``.

    Parameters
    ----------
    pred
        Predicted ATE (conditions x genes), e.g. a model ATE or a baseline.
    truth
        Reference ATE, e.g. :func:`~samsvae_pyro.evaluate.data_ate`; defines conditions and genes.
    top_k
        Number of genes per condition, largest |truth| first, for the "top" metrics.
    split_columns
        Boolean columns of ``truth.obs``; each gives a subset named without its "in_" prefix.
    reference
        Effect subtracted from every predicted and true row before scoring (Systema's centring), on
        ``truth``'s genes; None scores the changes from control.

    Returns
    -------
    DataFrame indexed by subset ("all", "train", "val", "test") with columns
    n_conditions (scored), n_skipped (NaN rows left out), pearson, r2 (flattened, truth as reference:
    1 - SSE/SST), pearson_top{k}, r2_top{k} (flattened over each condition's top-k genes),
    delta_pearson (mean per-condition Pearson across genes), mse_top{k} (mean per-condition MSE on
    its top-k genes), rank (mean normalised rank, 0 is perfect; see :func:`per_condition_metrics`).
    A subset without conditions keeps its row, with n_conditions = 0 and NaN metrics.

    Shapes
    ------
    pred : (C', G') covering truth's conditions and genes. truth : (C, G). reference : (G,).
    """
    values = aligned_ate(pred, truth, top_k=top_k, reference=reference)
    per_condition = _per_condition(*values, top_k=top_k)
    rows = {
        name: _subset_summary(*values, per_condition, members=members, top_k=top_k)
        for name, members in _subsets(truth, split_columns).items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def per_condition_metrics(
    pred: AnnData, truth: AnnData, *, top_k: int = 20, reference: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-condition agreement between predicted and true ATE rows.

    Parameters
    ----------
    pred
        Predicted ATE covering ``truth``'s conditions and genes.
    truth
        Reference ATE.
    top_k
        Number of genes per condition, largest |truth| first, for the "top" metrics.
    reference
        Effect subtracted from predicted and true rows before scoring, as in :func:`ate_metrics`.

    Returns
    -------
    DataFrame indexed by condition with columns pearson (across all genes), pearson_top{k},
    mse_top{k}, and rank: the fraction of the other conditions whose true effect is strictly closer
    (Euclidean over genes) to this condition's prediction than its own true effect (0 is perfect).
    Rows whose prediction or truth contains NaN hold NaN and do not serve as rank references.

    Shapes
    ------
    pred : (C', G'). truth : (C, G). reference : (G,). returns : C rows.
    """
    table = _per_condition(*aligned_ate(pred, truth, top_k=top_k, reference=reference), top_k=top_k)
    return table.set_axis(pd.Index(truth.obs_names, name="condition"))


def energy_distance(x: np.ndarray, y: np.ndarray, *, max_cells: int | None = 2000, seed: int = 0) -> float:
    """E-distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between two cell sets (Euclidean norms).

    The expectations are means over all pairs including a cell with itself (V-statistic), so the
    value is zero for identical sets and never negative.

    Parameters
    ----------
    x, y
        Cells in a shared space, e.g. PCA coordinates or log1p-normalised expression.
    max_cells
        Each set larger than this is subsampled to this many cells without replacement; None keeps all.
    seed
        Seed of the subsampling.

    Returns
    -------
    The E-distance (0 for identical sets).

    Shapes
    ------
    x : (n_x, D). y : (n_y, D).

    Examples
    --------
    >>> energy_distance(np.zeros((3, 2)), np.ones((4, 2)))
    2.8284271247461903
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(
            f"x and y must be non-empty 2-d arrays with the same number of columns; got shapes {x.shape} and "
            f"{y.shape}. Pass cells as rows in one shared feature space."
        )
    rng = np.random.default_rng(seed)
    x, y = (_subsample(cells, max_cells, rng) for cells in (x, y))
    value = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    return float(max(value, 0.0))


def interval_coverage(
    lower: AnnData | np.ndarray,
    upper: AnnData | np.ndarray,
    truth: AnnData | np.ndarray,
) -> float:
    """Fraction of true entries inside their interval [lower, upper].

    Parameters
    ----------
    lower, upper
        Interval bounds, e.g. model credible-interval layers; AnnData are aligned to ``truth`` by
        condition and gene, arrays must already match its shape. Entries with NaN anywhere are skipped.
    truth
        True effects.

    Returns
    -------
    The covered fraction in [0, 1].

    Shapes
    ------
    lower, upper, truth : (C, G) after alignment.

    Examples
    --------
    >>> interval_coverage(np.zeros((1, 4)), np.ones((1, 4)), np.array([[0.5, 1.0, 2.0, -1.0]]))
    0.5
    """
    y = _matrix(truth)
    low, high = (_values_like(bound, truth) for bound in (lower, upper))
    finite = np.isfinite(low) & np.isfinite(high) & np.isfinite(y)
    if not finite.any():
        raise ValueError("lower, upper and truth share no finite entry; check for all-NaN inputs.")
    if np.any(low[finite] > high[finite]):
        raise ValueError("lower exceeds upper for some entries; pass the bounds in the order (lower, upper).")
    inside = (low <= y) & (y <= high)
    return float(inside[finite].mean())


def _subsample(cells: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_cells`` rows drawn without replacement (all rows, in order, if fewer)."""
    if max_cells is None or len(cells) <= max_cells:
        return cells
    return cells[rng.choice(len(cells), size=max_cells, replace=False)]


def aligned_ate(
    pred: AnnData, truth: AnnData, *, top_k: int, reference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aligned values (centred on ``reference`` when given), the rows to score and each row's top-k genes.

    Shapes
    ------
    reference : (G,). returns : predicted (C, G), true (C, G), valid rows (C,) bool, top-k mask (C, G) bool.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k={top_k!r} is not a positive integer; pass e.g. top_k=20.")
    if truth.n_obs == 0 or truth.n_vars == 0:
        raise ValueError(f"truth has shape {truth.shape}; it needs at least one condition and one gene.")
    predicted, true = _aligned(pred, truth), _matrix(truth)
    valid = np.isfinite(predicted).all(axis=1) & np.isfinite(true).all(axis=1)
    if not valid.any():
        raise ValueError(
            "every condition has NaN in its predicted or true ATE row, so nothing can be scored; "
            "check the prediction (e.g. baselines give NaN where a condition is not predictable)."
        )
    top = _top_k_mask(np.where(np.isfinite(true), true, 0.0), top_k)
    if reference is None:
        return predicted, true, valid, top
    reference = np.asarray(reference, dtype=float)
    if reference.shape != (truth.n_vars,) or not np.isfinite(reference).all():
        raise ValueError(
            f"reference must be a finite effect with one value per gene of truth ({truth.n_vars},); got shape "
            f"{reference.shape}. Pass e.g. perturbed_reference(...) on truth's genes."
        )
    return predicted - reference, true - reference, valid, top


def _aligned(pred: AnnData, truth: AnnData) -> np.ndarray:
    """``pred.X`` reordered to ``truth``'s conditions and genes; names what is missing."""
    axes = (("conditions", pred.obs_names, truth.obs_names), ("genes", pred.var_names, truth.var_names))
    for axis, ours, theirs in axes:
        if ours.has_duplicates or theirs.has_duplicates:
            raise ValueError(f"pred and truth must have distinct {axis}; found duplicates.")
        missing = theirs.difference(ours)
        if len(missing):
            raise ValueError(
                f"pred lacks {len(missing)} of truth's {axis}: {list(missing[:5])}; predict them too, or "
                f"restrict truth to the {axis} of pred."
            )
    rows, columns = pred.obs_names.get_indexer(truth.obs_names), pred.var_names.get_indexer(truth.var_names)
    return _matrix(pred)[np.ix_(rows, columns)]


def _values_like(values: AnnData | np.ndarray, truth: AnnData | np.ndarray) -> np.ndarray:
    """Values as an array matching ``truth``: aligned by name for AnnData, shape-checked otherwise."""
    if isinstance(values, AnnData):
        if not isinstance(truth, AnnData):
            raise ValueError("an AnnData bound needs an AnnData truth to align with; pass arrays for both.")
        return _aligned(values, truth)
    values, shape = np.asarray(values, dtype=float), _matrix(truth).shape
    if values.shape != shape:
        raise ValueError(f"bounds of shape {values.shape} do not match truth of shape {shape}; align them.")
    return values


def _matrix(values: AnnData | np.ndarray) -> np.ndarray:
    """Dense float matrix of an AnnData's ``X`` or of an array."""
    matrix = values.X if isinstance(values, AnnData) else values
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=float)


def _top_k_mask(true: np.ndarray, top_k: int) -> np.ndarray:
    """Each row's top_k entries by absolute value (ties by gene order); exactly min(top_k, G) per row."""
    k = min(top_k, true.shape[1])
    order = np.argsort(-np.abs(true), axis=1, kind="stable")[:, :k]
    mask = np.zeros(true.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _per_condition(
    predicted: np.ndarray, true: np.ndarray, valid: np.ndarray, top: np.ndarray, *, top_k: int
) -> pd.DataFrame:
    """Per-row Pearson (all and top-k genes), top-k MSE and normalised rank; NaN on invalid rows."""
    k = int(top[0].sum())
    top_pred, top_true = predicted[top].reshape(-1, k), true[top].reshape(-1, k)
    table = pd.DataFrame(
        {
            "pearson": _pearson_rows(predicted, true),
            f"pearson_top{top_k}": _pearson_rows(top_pred, top_true),
            f"mse_top{top_k}": ((top_pred - top_true) ** 2).mean(axis=1),
            "rank": _normalised_rank(predicted, true, valid),
        }
    )
    table.loc[~valid] = np.nan
    return table


def _normalised_rank(predicted: np.ndarray, true: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fraction of other valid conditions' true rows strictly closer to each prediction than its own."""
    rank = np.full(len(true), np.nan)
    if valid.sum() < 2:
        return rank
    distances = cdist(predicted[valid], true[valid])  # (C_valid, C_valid)
    own = np.diag(distances)
    rank[valid] = (distances < own[:, None]).sum(axis=1) / (valid.sum() - 1)
    return rank


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair; NaN where a row is constant or non-finite.

    Shapes
    ------
    a, b : (R, n). returns : (R,).
    """
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    scale = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    numerator = (a * b).sum(axis=1)
    ok = np.isfinite(scale) & (scale > 0)
    return np.divide(numerator, scale, out=np.full(len(a), np.nan), where=ok)


def pearson(predicted: np.ndarray, true: np.ndarray) -> float:
    """Pearson correlation of the flattened arrays; NaN when empty or constant."""
    if not true.size:
        return float("nan")
    return float(_pearson_rows(predicted.reshape(1, -1), true.reshape(1, -1))[0])


def _r2(predicted: np.ndarray, true: np.ndarray) -> float:
    """1 - SSE / SST of the flattened arrays, truth as reference; NaN when empty or constant."""
    total = ((true - true.mean()) ** 2).sum() if true.size else 0.0
    return float(1 - ((predicted - true) ** 2).sum() / total) if total > 0 else float("nan")


def _subsets(truth: AnnData, split_columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Condition subsets: "all" plus one per split column, named without its "in_" prefix."""
    missing = [column for column in split_columns if column not in truth.obs]
    if missing:
        raise ValueError(
            f"truth.obs lacks the split columns {missing}; compute truth with data_ate or pass "
            f"split_columns=() to score all conditions only."
        )
    subsets = {"all": np.ones(truth.n_obs, dtype=bool)}
    for column in split_columns:
        subsets[column.removeprefix("in_")] = truth.obs[column].to_numpy(dtype=bool)
    return subsets


def _subset_summary(
    predicted: np.ndarray,
    true: np.ndarray,
    valid: np.ndarray,
    top: np.ndarray,
    per_condition: pd.DataFrame,
    *,
    members: np.ndarray,
    top_k: int,
) -> dict[str, float]:
    """One row of :func:`ate_metrics` for the conditions in ``members``."""
    scored = members & valid
    p, y, t = predicted[scored], true[scored], top[scored]
    means = per_condition[scored].mean()
    return {
        "n_conditions": int(scored.sum()),
        "n_skipped": int((members & ~valid).sum()),
        "pearson": pearson(p, y),
        "r2": _r2(p, y),
        f"pearson_top{top_k}": pearson(p[t], y[t]),
        f"r2_top{top_k}": _r2(p[t], y[t]),
        "delta_pearson": means["pearson"],
        f"mse_top{top_k}": means[f"mse_top{top_k}"],
        "rank": means["rank"],
    }


def ate_slope(predicted: np.ndarray, reference: np.ndarray, *, min_abs: float = MIN_ABS_EFFECT) -> float:
    """Least-squares slope of ``predicted`` on ``reference`` over entries with |reference| > ``min_abs``.

    1 means effects at their true size; below 1, shrinkage toward zero. NaN with fewer than 3 such entries.

    Examples
    --------
    >>> ate_slope(np.array([0.0, 1.0, -2.0, 3.0]), np.array([0.1, 2.0, -4.0, 6.0]))
    0.5
    """
    predicted, reference = np.asarray(predicted, float).ravel(), np.asarray(reference, float).ravel()
    keep = np.isfinite(predicted) & np.isfinite(reference) & (np.abs(reference) > min_abs)
    if keep.sum() < 3:
        return float("nan")
    x, y = reference[keep], predicted[keep]
    x_centred = x - x.mean()
    return float((x_centred * (y - y.mean())).sum() / (x_centred**2).sum())

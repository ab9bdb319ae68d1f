"""Observed vs replicated statistics: predictive intervals, posterior predictive p-values, summaries (issue 16).

For a statistic T with observed value t and replicated values t_1..t_R:

- ``replicated_mean``, ``replicated_sd`` (ddof 1), ``replicated_lower`` / ``replicated_upper``: the
  equal-tailed ``interval`` of the replicates;
- ``z`` = (t - mean) / sd, signed: positive where the data exceed what the model replicates;
- ``p_value``: two-sided predictive p-value 2 P(|t_R-1| >= |t - mean| / (sd sqrt(1 + 1/R))), the
  probability that a new draw from the replicated distribution lies further from the replicates' mean.
  It is exactly uniform when t and the replicates are independent draws of one normal variable
  (sums over many cells are nearly normal), and unlike a rank p-value it resolves values far outside
  all R replicates (a rank p-value cannot go below about 2 / R, so "p < 0.01" would need R >= 200).
  Statistics whose replicates take fewer than 5 distinct values (genes with a handful of counts in all
  the checked cells) get the rank p-value instead (see :func:`predictive_pvalue`): on sparse data the t
  reference would flag them for one stray count. Posterior predictive p-values of in-sample checks are
  conservative (the data informed the posterior), so a calibrated model gives fewer small p-values than a
  uniform law would.

A summary per statistic: ``n`` units, ``flagged`` (fraction of units with p < ``threshold``),
``r2`` (squared Pearson correlation across units of observed vs replicated mean, on log(1 + .) for
statistics spanning orders of magnitude, as scvi-tools reports for the coefficient of variation) and
``median_z`` (the typical direction and size of the discrepancy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COMPARISON_COLUMNS = ("observed", "replicated_mean", "replicated_sd", "replicated_lower", "replicated_upper",
                      "z", "p_value")
SUMMARY_COLUMNS = ("n", "flagged", "r2", "median_z")
MIN_DISTINCT = 5  # replicated values per unit below which a statistic counts as discrete


def predictive_pvalue(observed: np.ndarray, replicated: np.ndarray) -> np.ndarray:
    """Two-sided predictive p-value of each observed value among its replicates (see the module docstring).

    Where the replicates take fewer than :data:`MIN_DISTINCT` distinct values (a rare gene's mean, cv or zero
    fraction: a handful of counts in all the checked cells), the statistic is too discrete for the t reference,
    and the p-value is the rank one, min(1, 2 (1 + #{replicates at least as far out}) / (R + 1)): valid
    whatever the distribution, but never below 2 / (R + 1), so such units are not flagged at p < 0.01 with
    R < 200 replicates.

    Shapes: observed (U,); replicated (R, U) with R >= 2; returns (U,).
    """
    from scipy import stats  # scipy.stats is slow to import; loading a model class does not need it

    n_samples = replicated.shape[0]
    if n_samples < 2:
        raise ValueError(f"A predictive p-value needs at least 2 replicates, got {n_samples}.")
    mean, sd = replicated.mean(0), replicated.std(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(observed - mean) / (sd * np.sqrt(1 + 1 / n_samples))
    p = 2 * stats.t.sf(t, df=n_samples - 1)
    discrete = _n_distinct(replicated) < MIN_DISTINCT
    p[discrete] = _rank_pvalue(observed[discrete], replicated[:, discrete])
    p[np.isnan(observed) | np.isnan(mean)] = np.nan
    return p


def _n_distinct(values: np.ndarray) -> np.ndarray:
    """Number of distinct values in each column. Shapes: (R, U) -> (U,)."""
    ordered = np.sort(values, axis=0)
    return 1 + (np.diff(ordered, axis=0) != 0).sum(0)


def _rank_pvalue(observed: np.ndarray, replicated: np.ndarray) -> np.ndarray:
    """min(1, 2 (1 + #{replicates on the far side, ties included}) / (R + 1)), the smaller tail."""
    upper = (replicated >= observed).sum(0)
    lower = (replicated <= observed).sum(0)
    return np.minimum(1.0, 2 * (1 + np.minimum(upper, lower)) / (replicated.shape[0] + 1))


def compare(observed: np.ndarray, replicated: np.ndarray, *, interval: float = 0.9) -> pd.DataFrame:
    """Observed value, replicated distribution, z and p-value of each unit (columns: ``COMPARISON_COLUMNS``).

    Shapes: observed (U,); replicated (R, U); returns U rows.
    """
    if not 0 < interval < 1:
        raise ValueError(f"interval must lie in (0, 1), got {interval}.")
    observed, replicated = np.asarray(observed, dtype=float), np.asarray(replicated, dtype=float)
    tail = (1 - interval) / 2
    mean, sd = replicated.mean(0), replicated.std(0, ddof=1)
    lower, upper = np.quantile(replicated, [tail, 1 - tail], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (observed - mean) / sd, np.sign(observed - mean) * np.inf)
    z = np.where(observed == mean, 0.0, z)
    return pd.DataFrame({"observed": observed, "replicated_mean": mean, "replicated_sd": sd,
                         "replicated_lower": lower, "replicated_upper": upper, "z": z,
                         "p_value": predictive_pvalue(observed, replicated)})


def summarise(comparison: pd.DataFrame, *, log_scale: bool = False, threshold: float = 0.01) -> dict[str, float]:
    """``n``, ``flagged`` (fraction with p < threshold), ``r2`` and ``median_z`` of one statistic's units."""
    valid = comparison.dropna(subset=["observed", "replicated_mean", "p_value"])
    observed, replicated = valid["observed"].to_numpy(), valid["replicated_mean"].to_numpy()
    if log_scale:
        observed, replicated = np.log1p(np.maximum(observed, 0)), np.log1p(np.maximum(replicated, 0))
    r2 = float(np.corrcoef(observed, replicated)[0, 1] ** 2) if len(valid) > 2 and observed.std() > 0 \
        and replicated.std() > 0 else float("nan")
    z = valid["z"].to_numpy()
    return {"n": int(len(valid)), "flagged": float((valid["p_value"] < threshold).mean()) if len(valid) else
            float("nan"), "r2": r2, "median_z": float(np.median(z)) if len(z) else float("nan")}

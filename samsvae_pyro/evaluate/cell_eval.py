"""Arc Institute's cell-eval (optional extra ``pip install "samsvae-pyro[eval]"``) on our predictions.

cell-eval (the Virtual Cell Challenge's evaluation) compares predicted with observed cells. This
module only puts cells into the layout it expects and calls its ``MetricsEvaluator``; every number
it returns is cell-eval's own.

Layout handed to cell-eval:

- the same genes in the same order in both AnnData;
- ``obs["perturbation"]``: the condition label, the control cells under our control label;
- ``X``: ln(1 + 1e4 x / sum_g x_g), log1p of counts normalised to 1e4 (what scanpy's
  ``normalize_total(target_sum=1e4)`` then ``log1p`` give), i.e. ``perturbseq_transform(x) * ln 2``. A
  condition's mean change from control in this layout is therefore ln 2 times our "perturbseq"
  ATE, so Pearson metrics of the change (cell-eval's ``pearson_delta``, our per-condition
  ``pearson``) have the same definition and agree on the same cells.

Predictions that are ATEs rather than cells (the baselines) become cells with
:func:`mean_cells`: each condition's cells are copies of the predicted mean (control mean plus the
ATE), as cell-eval's own mean baselines are built; controls are the observed control cells.

Choices:

- profile ``"minimal"`` by default: Pearson of the change, MSE and MAE of the mean, the
  discrimination score (L1), overlap and precision of the top differentially expressed genes, and
  the number of DE genes. Its ``"full"`` profile adds clustering and distribution metrics that need
  more conditions and cells than a small screen has.
- differential expression (cell-eval's ``pdex``) runs on one thread unless told otherwise.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import anndata as ad
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from samsvae_pyro.data.transforms import perturbseq_transform

if TYPE_CHECKING:
    from samsvae_pyro.data import PerturbationData

PERTURBATION_COLUMN = "perturbation"
DEFAULT_PROFILE = "minimal"
INSTALL_HINT = 'cell-eval is not installed; install the extra with pip install "samsvae-pyro[eval]" (Python >= 3.11).'


def cell_eval_version() -> str | None:
    """The installed cell-eval version, or None when it is not importable."""
    try:
        from importlib.metadata import version

        import cell_eval  # noqa: F401
    except ImportError:
        return None
    return version("cell-eval")


def lognormal_cells(
    counts: np.ndarray | sp.spmatrix,
    labels: Sequence[str],
    var_names: Sequence[str],
    *,
    obs_names: Sequence[str] | None = None,
) -> AnnData:
    """Cells in cell-eval's layout: ln(1 + 1e4 x / sum x) in ``X``, labels in ``obs["perturbation"]``.

    Parameters
    ----------
    counts
        Counts (observed or sampled), sparse or dense.
    labels
        Condition label per cell (control cells under the control label).
    var_names
        Gene names.
    obs_names
        Cell names; default ``cell_0, cell_1, ...``.

    Returns
    -------
    AnnData with float32 ``X`` (sparse stays sparse).

    Shapes
    ------
    counts : (N, G). labels : (N,). returns : (N, G).
    """
    values = perturbseq_transform(counts) * math.log(2)
    values = values.astype(np.float32) if sp.issparse(values) else np.asarray(values, dtype=np.float32)
    names = list(obs_names) if obs_names is not None else [f"cell_{i}" for i in range(values.shape[0])]
    obs = pd.DataFrame({PERTURBATION_COLUMN: pd.Categorical(np.asarray(labels, dtype=str))}, index=names)
    return AnnData(X=values, obs=obs, var=pd.DataFrame(index=pd.Index(var_names, dtype=str)))


def observed_cells(data: PerturbationData, conditions: Sequence[str], *, cells: np.ndarray | None = None) -> AnnData:
    """The observed cells of ``conditions`` and the control cells, in cell-eval's layout.

    Parameters
    ----------
    data
        The perturbation dataset.
    conditions
        Condition labels to keep (as in ``data.labels``); the control cells are always kept.
    cells
        Row positions to choose from; default every cell whose split is not "excluded" (the cells of
        our data ATE).

    Returns
    -------
    AnnData (cells x genes), see :func:`lognormal_cells`.
    """
    labels = np.asarray(data.labels).astype(str)
    chosen = np.flatnonzero(np.asarray(data.split) != "excluded") if cells is None else np.asarray(cells)
    keep = chosen[np.isin(labels[chosen], [*map(str, conditions), data.vocabulary.control_label])]
    return lognormal_cells(data.counts[keep], labels[keep], data.var_names, obs_names=data.obs_names[keep])


def mean_cells(control: AnnData, ate: AnnData, n_cells: int | Mapping[str, int]) -> AnnData:
    """Cells of a mean prediction: copies of control mean + ln 2 * ATE per condition, then the control cells.

    Parameters
    ----------
    control
        Observed control cells in cell-eval's layout (:func:`observed_cells` restricted to control).
    ate
        Predicted "perturbseq" ATE (conditions x genes, log2 units), e.g. a baseline; rows with NaN
        are left out (the condition cannot be predicted).
    n_cells
        Cells per condition, one number or one per condition (e.g. the observed counts).

    Returns
    -------
    AnnData in cell-eval's layout; ``uns["clipped_fraction"]`` is the fraction of predicted entries
    below zero that were raised to zero (log-normalised values cannot be negative).

    Shapes
    ------
    control : (N_c, G). ate : (C, G) on control's genes. returns : (sum of n_cells + N_c, G).
    """
    ate = ate[np.isfinite(np.asarray(ate.X)).all(axis=1)][:, list(control.var_names)]
    control_x = control.X.toarray() if sp.issparse(control.X) else np.asarray(control.X)
    means = control_x.mean(axis=0) + math.log(2) * np.asarray(ate.X)  # (C, G)
    sizes = [n_cells if isinstance(n_cells, (int, np.integer)) else int(n_cells[c]) for c in ate.obs_names]
    labels = np.repeat(np.asarray(ate.obs_names, dtype=str), sizes)
    predicted = AnnData(X=np.repeat(np.clip(means, 0.0, None), sizes, axis=0).astype(np.float32),
                        obs=pd.DataFrame({PERTURBATION_COLUMN: labels}, index=[f"pred_{i}" for i in range(len(labels))]),
                        var=pd.DataFrame(index=control.var_names))
    observed = AnnData(X=control_x.astype(np.float32), obs=control.obs[[PERTURBATION_COLUMN]].astype(str),
                       var=pd.DataFrame(index=control.var_names))
    out = ad.concat([predicted, observed])
    out.obs[PERTURBATION_COLUMN] = pd.Categorical(out.obs[PERTURBATION_COLUMN].astype(str))
    out.uns["clipped_fraction"] = float((means < 0).mean()) if means.size else 0.0
    return out


def cell_eval_metrics(
    real: AnnData,
    pred: AnnData,
    *,
    control_label: str,
    profile: str = DEFAULT_PROFILE,
    num_threads: int = 1,
    output_dir: str | None = None,
) -> pd.DataFrame:
    """cell-eval's per-condition metrics of ``pred`` against ``real`` (both in its layout).

    Parameters
    ----------
    real, pred
        Observed and predicted cells (:func:`observed_cells`, :func:`mean_cells`, or a model's
        predicted cells through :func:`lognormal_cells`), with the same genes and conditions.
    control_label
        Label of the control cells in ``obs["perturbation"]``.
    profile
        cell-eval metric profile ("minimal", "vcc", "de", "anndata", "full").
    num_threads
        Threads of cell-eval's differential expression.
    output_dir
        Where cell-eval writes its CSV files; default a temporary directory, removed afterwards.

    Returns
    -------
    DataFrame indexed by condition, one column per cell-eval metric.

    Raises
    ------
    ImportError
        When cell-eval is not installed (the message says how to install it).
    """
    try:
        from cell_eval import MetricsEvaluator
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    _check_pair(real, pred, control_label)
    with tempfile.TemporaryDirectory() as scratch:
        evaluator = MetricsEvaluator(
            adata_pred=pred.copy(), adata_real=real.copy(), control_pert=control_label,
            pert_col=PERTURBATION_COLUMN, num_threads=num_threads, outdir=output_dir or scratch,
        )
        results, _ = evaluator.compute(profile=profile, write_csv=output_dir is not None)
    table = results.to_pandas().set_index("perturbation")
    table.index = table.index.astype(str)
    return table.astype(float)


def summarise(table: pd.DataFrame, subsets: Mapping[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Mean of each cell-eval metric over the conditions of each subset (conditions absent from ``table`` skipped).

    Returns
    -------
    ``{subset: {"n_conditions": n, metric: mean, ...}}``; a subset without scored conditions gets
    only ``n_conditions = 0``.
    """
    out = {}
    for name, conditions in subsets.items():
        rows = table.loc[table.index.intersection(pd.Index(conditions, dtype=str))]
        out[name] = {"n_conditions": len(rows), **(rows.mean().to_dict() if len(rows) else {})}
    return out


def _check_pair(real: AnnData, pred: AnnData, control_label: str) -> None:
    """ValueError naming what differs between the two AnnData, before cell-eval sees them."""
    for name, adata in (("real", real), ("pred", pred)):
        if PERTURBATION_COLUMN not in adata.obs:
            raise ValueError(f"{name} lacks obs[{PERTURBATION_COLUMN!r}]; build it with lognormal_cells.")
        if control_label not in set(adata.obs[PERTURBATION_COLUMN].astype(str)):
            raise ValueError(f"{name} has no control cells labelled {control_label!r}; add them.")
    if list(real.var_names) != list(pred.var_names):
        raise ValueError("real and pred must have the same genes in the same order.")
    ours, theirs = (set(a.obs[PERTURBATION_COLUMN].astype(str)) for a in (pred, real))
    if ours != theirs:
        raise ValueError(f"real and pred must hold the same conditions; only in one of them: "
                         f"{sorted(ours ^ theirs)[:5]}.")


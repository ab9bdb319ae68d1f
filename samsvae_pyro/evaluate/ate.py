"""Data average treatment effects (docs/model.md, section 5, "Average treatment effect").

ATE_t = mean over cells labelled t of f(x) - mean over control cells of f(x), with
f(x) = log2(1 + 1e4 x / sum_g x_g) ("perturbseq", used for every paper result) or f = identity
("mean"). Results are AnnData objects (conditions x genes) so that data ATEs, model ATEs and
baselines share one structure and can be read by other evaluation suites.

Deliberate deviations from the paper code:

- Cells with zero total count get f(x) = 0 instead of NaN.
- By default cells of every split except "excluded" are used (the paper uses all cells).
- The split columns ``in_train`` / ``in_val`` / ``in_test`` are read from the whole dataset, not
  only from the chosen cells, so an ATE on training cells still says where each condition appears.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from samsvae_pyro._typing import AteMethod
from samsvae_pyro.data.transforms import ate_transform, perturbseq_transform

if TYPE_CHECKING:
    from samsvae_pyro.data import PerturbationData
    from samsvae_pyro.data.ondisk import OnDiskMatrix

__all__ = ["SPLIT_COLUMNS", "ate_anndata", "ate_transform", "condition_split_flags", "data_ate",
           "perturbseq_transform"]

SPLIT_COLUMNS = ("in_train", "in_val", "in_test")


def ate_anndata(
    values: np.ndarray,
    conditions: Sequence[str],
    var_names: Sequence[str],
    *,
    layers: Mapping[str, np.ndarray] | None = None,
    obs: pd.DataFrame | Mapping[str, Sequence] | None = None,
) -> AnnData:
    """The ATE container: an AnnData of effects with condition labels as obs and genes as var.

    Parameters
    ----------
    values
        Effects, one row per condition.
    conditions
        Condition labels (distinct), e.g. "A" or "A+B".
    var_names
        Gene names (distinct).
    layers
        Extra matrices of the same shape, e.g. credible-interval bounds "lower" and "upper".
    obs
        Per-condition columns, e.g. "n_cells" and the split flags "in_train", "in_val", "in_test".

    Returns
    -------
    AnnData with float64 ``X``.

    Shapes
    ------
    values : (C, G) for C conditions.
    layers : each (C, G).
    obs : C rows.
    """
    values = np.asarray(values, dtype=np.float64)
    conditions, var_names = pd.Index(conditions, dtype=str), pd.Index(var_names, dtype=str)
    if values.shape != (len(conditions), len(var_names)):
        raise ValueError(
            f"values has shape {values.shape} but there are {len(conditions)} conditions and "
            f"{len(var_names)} genes; pass one row per condition and one column per gene."
        )
    for name, index in (("conditions", conditions), ("var_names", var_names)):
        if index.has_duplicates:
            duplicates = list(index[index.duplicated()][:5])
            raise ValueError(f"{name} contains duplicates {duplicates}; labels must be distinct.")
    columns = {key: np.asarray(column) for key, column in dict(obs if obs is not None else {}).items()}
    obs_frame = pd.DataFrame(columns, index=conditions)
    layers = {key: np.asarray(layer, dtype=np.float64) for key, layer in (layers or {}).items()}
    return AnnData(X=values, obs=obs_frame, var=pd.DataFrame(index=var_names), layers=layers)


def data_ate(
    data: PerturbationData,
    *,
    method: AteMethod = "perturbseq",
    cells: np.ndarray | None = None,
    chunk_size: int = 4096,
) -> AnnData:
    """Data ATE_t = mean_{i: label t} f(x_i) - mean_{i: control} f(x_i) for every condition t.

    Parameters
    ----------
    data
        The perturbation dataset (counts, labels, splits).
    method
        "perturbseq" (f = :func:`perturbseq_transform`) or "mean" (f = identity).
    cells
        Row positions (or a boolean mask over all N cells) of the cells to use; by default every
        cell whose split is not "excluded". Must contain control cells.
    chunk_size
        Rows transformed at a time; the count matrix is never densified as a whole.

    Returns
    -------
    AnnData (conditions x genes): ``X`` the ATE; ``obs["n_cells"]`` cells of the condition among the
    chosen ones; ``obs["in_train"|"in_val"|"in_test"]`` whether the condition has cells in that
    split anywhere in ``data``. Conditions are every non-control label of the chosen cells, sorted.

    Shapes
    ------
    data.counts : (N, G).
    cells : (n,) integer positions or (N,) bool.
    returns : (C, G).
    """
    transform = ate_transform(method)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive number of rows.")
    cells = _chosen_cells(data, cells)
    labels = np.asarray(data.labels)[cells].astype(str)
    control = data.vocabulary.control_label
    is_control = labels == control
    conditions = np.unique(labels[~is_control])
    if is_control.all() or not is_control.any():
        raise ValueError(
            f"the chosen cells need both control cells (label {control!r}) and perturbed cells; got "
            f"{int(is_control.sum())} control and {int((~is_control).sum())} perturbed. Choose other cells."
        )
    groups = pd.Index(np.append(conditions, control))
    codes = groups.get_indexer(labels)
    means = _group_means(data.counts, cells, codes, len(groups), transform=transform, chunk_size=chunk_size)
    n_cells = np.bincount(codes, minlength=len(groups))[:-1]
    obs = {"n_cells": n_cells, **condition_split_flags(data, conditions)}
    return ate_anndata(means[:-1] - means[-1], conditions, data.var_names, obs=obs)


def condition_split_flags(data: PerturbationData, conditions: Sequence[str]) -> dict[str, np.ndarray]:
    """For each condition, whether it has cells in the train / val / test split of ``data``.

    Parameters
    ----------
    data
        The perturbation dataset.
    conditions
        Condition labels; one without cells gets False everywhere.

    Returns
    -------
    The ATE obs columns "in_train", "in_val" and "in_test".

    Shapes
    ------
    conditions : (C,). returns : each (C,) bool.
    """
    table = pd.crosstab(np.asarray(data.labels).astype(str), np.asarray(data.split).astype(str))
    table = table.reindex(index=conditions, fill_value=0)
    absent = pd.Series(0, index=conditions)
    return {column: table.get(column.removeprefix("in_"), absent).to_numpy() > 0 for column in SPLIT_COLUMNS}


def _chosen_cells(data: PerturbationData, cells: np.ndarray | None) -> np.ndarray:
    """Sorted integer row positions of the chosen cells (default: all but the "excluded" split)."""
    n_cells = data.counts.shape[0]
    if cells is None:
        return np.flatnonzero(np.asarray(data.split) != "excluded")
    cells = np.asarray(cells)
    if cells.dtype == bool:
        if cells.shape != (n_cells,):
            raise ValueError(f"a boolean cells mask must have shape ({n_cells},), got {cells.shape}.")
        return np.flatnonzero(cells)
    if cells.size and (cells.min() < 0 or cells.max() >= n_cells):
        raise ValueError(f"cells must be row positions in [0, {n_cells}); got values outside that range.")
    return np.sort(cells.astype(np.int64))


def _group_means(
    counts: np.ndarray | sp.spmatrix | OnDiskMatrix,
    rows: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    *,
    transform: Callable,
    chunk_size: int,
) -> np.ndarray:
    """Per-group mean of transform(counts[rows]), accumulated over chunks of ``chunk_size`` sorted rows (counts on
    disk are read chunk by chunk).

    Shapes
    ------
    counts : (N, G). rows, codes : (n,) with codes in [0, n_groups). returns : (n_groups, G).
    """
    sums = np.zeros((n_groups, counts.shape[1]))
    for start in range(0, len(rows), chunk_size):
        block = counts[rows[start : start + chunk_size]]
        block = transform(block)
        block_codes = codes[start : start + chunk_size]
        indicator = sp.csr_matrix(
            (np.ones(len(block_codes)), (block_codes, np.arange(len(block_codes)))),
            shape=(n_groups, len(block_codes)),
        )
        product = indicator @ block  # (n_groups, G)
        sums += product.toarray() if sp.issparse(product) else np.asarray(product)
    return sums / np.bincount(codes, minlength=n_groups)[:, None]

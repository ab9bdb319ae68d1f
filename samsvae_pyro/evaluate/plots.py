"""Report figures written as PNG files (issue "Evaluation", item 7).

Figures are built on :class:`matplotlib.figure.Figure` directly, with no pyplot state and no change of
the user's backend: nothing stays open after a call, and the functions work headless.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import leaves_list, linkage

from samsvae_pyro.evaluate.metrics import aligned_ate, pearson
from samsvae_pyro.files import atomic_path

_MAX_POINTS = 50_000  # scatter points drawn per panel; correlations always use every entry
MAX_TICK_LABELS = 60


def plot_ate_scatter(pred: AnnData, truth: AnnData, path: str | os.PathLike, *, top_k: int = 20) -> Path:
    """Predicted vs observed ATE: all entries, and each condition's top-k genes by |truth|.

    Parameters
    ----------
    pred
        Predicted ATE covering ``truth``'s conditions and genes (NaN rows are left out).
    truth
        Reference ATE (e.g. the data ATE).
    path
        Output PNG file.
    top_k
        Genes per condition in the right panel.

    Returns
    -------
    The written path.

    Shapes
    ------
    pred : (C', G'). truth : (C, G).
    """
    predicted, true, valid, top = aligned_ate(pred, truth, top_k=top_k)
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    panels = (("all genes", np.ones_like(top)), (f"top-{top_k} genes by |observed|", top))
    for axes, (title, entries) in zip(figure.subplots(1, 2), panels):
        x, y = true[valid][entries[valid]], predicted[valid][entries[valid]]
        shown = np.random.default_rng(0).permutation(len(x))[:_MAX_POINTS]
        axes.scatter(x[shown], y[shown], s=3, alpha=0.4, linewidths=0, rasterized=True)
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        axes.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--")
        axes.set(xlabel="observed ATE", ylabel="predicted ATE", title=f"{title}: r = {pearson(y, x):.3f}")
    skipped = f", {int((~valid).sum())} skipped (NaN)" if (~valid).any() else ""
    figure.suptitle(f"{int(valid.sum())} conditions{skipped}")
    return save_figure(figure, path)


def plot_metric_distribution(per_condition: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Histogram of every numeric per-condition metric (one panel each, NaN left out).

    Parameters
    ----------
    per_condition
        Table indexed by condition, e.g. :func:`~samsvae_pyro.evaluate.per_condition_metrics`.
    path
        Output PNG file.

    Returns
    -------
    The written path.
    """
    numeric = per_condition.select_dtypes("number")
    columns = [column for column in numeric if numeric[column].notna().any()]
    if not columns:
        raise ValueError(
            "per_condition has no numeric column with a finite value; pass per_condition_metrics output."
        )
    figure = Figure(figsize=(3.2 * len(columns), 3), layout="constrained")
    for axes, column in zip(np.atleast_1d(figure.subplots(1, len(columns))), columns):
        values = per_condition[column].dropna()
        axes.hist(values, bins=min(30, max(5, len(values) // 3)))
        axes.axvline(values.mean(), color="black", linewidth=1)
        axes.set(xlabel=column, ylabel="conditions", title=f"{column}: mean {values.mean():.3f}")
    return save_figure(figure, path)


def plot_mask_heatmap(mask_prob: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Heatmap of q(m = 1), perturbations x latent dims, both ordered by hierarchical clustering.

    Parameters
    ----------
    mask_prob
        Mask probabilities indexed by perturbation, one column per latent dimension.
    path
        Output PNG file.

    Returns
    -------
    The written path.

    Shapes
    ------
    mask_prob : (T, K).
    """
    values = mask_prob.to_numpy(dtype=float)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"mask_prob must be a non-empty table of finite probabilities; got {values.shape}.")
    rows, columns = _cluster_order(values), _cluster_order(values.T)
    size = (min(2 + 0.12 * values.shape[1], 16), min(2 + 0.12 * values.shape[0], 24))
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.subplots()
    ordered = values[np.ix_(rows, columns)]
    image = axes.imshow(ordered, aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    figure.colorbar(image, ax=axes, label="q(m = 1)")
    ticks = ((axes.set_yticks, mask_prob.index, rows), (axes.set_xticks, mask_prob.columns, columns))
    for set_ticks, names, order in ticks:
        if len(order) <= MAX_TICK_LABELS:
            set_ticks(np.arange(len(order)), [str(names[i]) for i in order], fontsize=6)
    axes.set(xlabel="latent dimension", ylabel="perturbation")
    return save_figure(figure, path)


def plot_training_curves(history: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Training loss per step and validation loss where evaluated.

    Parameters
    ----------
    history
        Columns step, train_loss and val_loss (NaN where validation was not run).
    path
        Output PNG file.

    Returns
    -------
    The written path.
    """
    missing = {"step", "train_loss", "val_loss"}.difference(history.columns)
    if missing:
        raise ValueError(f"history lacks the columns {sorted(missing)}; pass the trainer's history table.")
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    axes.plot(history["step"], history["train_loss"], linewidth=0.8, label="train")
    validation = history[["step", "val_loss"]].dropna()
    axes.plot(validation["step"], validation["val_loss"], marker="o", markersize=3, label="validation")
    axes.set(xlabel="step", ylabel="loss", title="training curves")
    axes.legend()
    return save_figure(figure, path)


def _cluster_order(values: np.ndarray) -> np.ndarray:
    """Row order of average-linkage hierarchical clustering (Euclidean); identity for one row."""
    if len(values) < 2:
        return np.arange(len(values))
    return leaves_list(linkage(values, method="average"))


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write the figure as PNG (whole or not at all) and return its path."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return Path(path)

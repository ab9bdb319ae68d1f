"""Report figures written as PNG files (issue "Evaluation", item 7).

Figures are built on :class:`matplotlib.figure.Figure` directly, with no pyplot state and no change of
the user's backend: nothing stays open after a call, and the functions work headless.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from samsvae_pyro.evaluate.metrics import aligned_ate, ate_slope, pearson
from samsvae_pyro.files import atomic_path

_MAX_POINTS = 50_000  # scatter points drawn per panel; correlations always use every entry
MAX_TICK_LABELS = 60


ATE_UNIT = "log2 fold change, expression per 10k counts"  # the "perturbseq" ATE (docs/model.md, section 5)
_HIGHLIGHT, _OTHER = "tab:orange", "tab:blue"


def plot_ate_scatter(pred: AnnData, truth: AnnData, path: str | os.PathLike, *, top_k: int = 20,
                     highlight: Sequence[str] | None = None, unit: str = ATE_UNIT) -> Path:
    """Predicted vs observed ATE: all entries, and each condition's top-k genes by |truth|.

    The entries of the ``highlight`` conditions (default: those without training cells, where
    ``truth.obs["in_train"]`` is False, e.g. held-out combinations) are drawn on top in another colour.
    Each panel's title gives Pearson r and the slope (least-squares slope of predicted on observed over
    entries with |observed| > 0.5,
    ``metrics.MIN_ABS_EFFECT``: 1 when effect sizes are right, below 1 when the model
    shrinks them; :func:`~samsvae_pyro.evaluate.metrics.ate_slope`).

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
    highlight
        Condition labels to highlight; ``None``: the conditions without training cells.
    unit
        Unit of the ATE for the axis labels.

    Returns
    -------
    The written path.

    Shapes
    ------
    pred : (C', G'). truth : (C, G).
    """
    return save_figure(_ate_scatter_figure(pred, truth, top_k=top_k, highlight=highlight, unit=unit), path)


def _ate_scatter_figure(pred: AnnData, truth: AnnData, *, top_k: int, highlight: Sequence[str] | None,
                        unit: str) -> Figure:
    predicted, true, valid, top = aligned_ate(pred, truth, top_k=top_k)
    if highlight is None:
        highlight = truth.obs_names[~truth.obs["in_train"].to_numpy(bool)] if "in_train" in truth.obs else []
    marked = np.asarray(truth.obs_names.isin(list(highlight)))  # (C,)
    figure = Figure(figsize=(11, 5), layout="constrained")
    panels = (("all genes", np.ones_like(top)), (f"top-{top_k} genes by |observed|", top))
    for axes, (title, entries) in zip(figure.subplots(1, 2), panels):
        chosen = entries & valid[:, None]
        x, y = true[chosen], predicted[chosen]
        for rows, colour, label in ((~marked, _OTHER, "conditions with training cells"),
                                    (marked, _HIGHLIGHT, "held out of training")):
            part = chosen & rows[:, None]
            if part.any():
                shown = np.random.default_rng(0).permutation(int(part.sum()))[:_MAX_POINTS]
                axes.scatter(true[part][shown], predicted[part][shown], s=4, alpha=0.5, linewidths=0, color=colour,
                             rasterized=True, label=f"{label} ({int((rows & valid).sum())})")
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        axes.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle="--", label="y = x")
        axes.set(xlabel=f"observed ATE ({unit})", ylabel=f"predicted ATE ({unit})",
                 title=f"{title}: r = {pearson(y, x):.3f}, slope = {ate_slope(y, x):.2f}")
        axes.legend(fontsize=7, loc="upper left")
    skipped = f", {int((~valid).sum())} skipped (NaN)" if (~valid).any() else ""
    figure.suptitle(f"{int(valid.sum())} conditions{skipped}")
    return figure


def plot_metric_distribution(per_condition: pd.DataFrame, path: str | os.PathLike, *, n_named: int = 3) -> Path:
    """Histogram of every numeric per-condition metric (one panel each, NaN left out), naming the outliers.

    Each panel names its ``n_named`` worst conditions (lowest correlation or R^2; highest MSE or rank).

    Parameters
    ----------
    per_condition
        Table indexed by condition, e.g. :func:`~samsvae_pyro.evaluate.per_condition_metrics`.
    path
        Output PNG file.
    n_named
        Worst conditions named per panel.

    Returns
    -------
    The written path.
    """
    return save_figure(_metric_distribution_figure(per_condition, n_named=n_named), path)


def _metric_distribution_figure(per_condition: pd.DataFrame, *, n_named: int) -> Figure:
    numeric = per_condition.select_dtypes("number")
    columns = [column for column in numeric if numeric[column].notna().any()]
    if not columns:
        raise ValueError(
            "per_condition has no numeric column with a finite value; pass per_condition_metrics output."
        )
    figure = Figure(figsize=(3.6 * len(columns), 3.6), layout="constrained")
    for axes, column in zip(np.atleast_1d(figure.subplots(1, len(columns))), columns):
        values = per_condition[column].dropna()
        axes.hist(values, bins=min(30, max(5, len(values) // 3)))
        axes.axvline(values.mean(), color="black", linewidth=1)
        worst = values.sort_values(ascending=not _higher_is_worse(str(column))).head(n_named)
        for name, value in worst.items():
            axes.axvline(value, color=_HIGHLIGHT, linewidth=0.8, linestyle=":")
        axes.text(0.02, 0.98, "worst:\n" + "\n".join(f"{name}: {value:.3g}" for name, value in worst.items()),
                  transform=axes.transAxes, va="top", fontsize=7, color=_HIGHLIGHT)
        axes.set(xlabel=column, ylabel="conditions", title=f"{column}: mean {values.mean():.3f}")
    return figure


def _higher_is_worse(metric: str) -> bool:
    """Whether a per-condition metric is an error (MSE, rank) rather than an agreement (r, R^2)."""
    return "mse" in metric or "rank" in metric


def plot_mask_heatmap(mask_prob: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Heatmap of q(m = 1), perturbations x latent dims, sized to the matrix and ordered to show structure.

    Latent dimensions are ordered by how many perturbations use them (sum of probabilities, most used
    first) and perturbations by the first of those dimensions they switch on, then by that
    probability, so that a sparse mask reads as a staircase (:func:`mask_order`). Every row and column
    gets a readable label up to 60 of them; larger matrices drop the labels and thin the rows.

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
    return save_figure(_mask_heatmap_figure(mask_prob), path)


def mask_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column order of a mask-probability matrix that shows its structure.

    Columns: by decreasing sum (most used latent dimension first). Rows: by the position, in that column
    order, of the row's strongest column, then by decreasing strength.

    Shapes
    ------
    values : (T, K). returns : (T,) and (K,) permutations.
    """
    columns = np.argsort(-values.sum(axis=0), kind="stable")
    ordered = values[:, columns]
    strongest = ordered.argmax(axis=1)
    rows = np.lexsort((-ordered[np.arange(len(values)), strongest], strongest))
    return rows, columns


def _mask_heatmap_figure(mask_prob: pd.DataFrame) -> Figure:
    values = mask_prob.to_numpy(dtype=float)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"mask_prob must be a non-empty table of finite probabilities; got {values.shape}.")
    rows, columns = mask_order(values)
    n_rows, n_columns = values.shape
    labelled = n_rows <= MAX_TICK_LABELS, n_columns <= MAX_TICK_LABELS
    label_width = 0.09 * max((len(str(name)) for name in mask_prob.index), default=1) if labelled[0] else 0.2
    width = 1.6 + label_width + (0.32 if labelled[1] else 0.05) * n_columns
    height = 1.3 + (0.22 if labelled[0] else 0.04) * n_rows
    figure = Figure(figsize=(min(max(width, 4.0), 24), min(max(height, 3.0), 40)), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(values[np.ix_(rows, columns)], aspect="auto", vmin=0, vmax=1, cmap="viridis",
                        interpolation="nearest")
    figure.colorbar(image, ax=axes, label="q(m = 1)", shrink=min(1.0, 6 / max(height, 1)))
    ticks = ((axes.set_yticks, mask_prob.index, rows, labelled[0]),
             (axes.set_xticks, mask_prob.columns, columns, labelled[1]))
    for set_ticks, names, order, show in ticks:
        if show:
            set_ticks(np.arange(len(order)), [str(names[i]).removeprefix("latent_") for i in order], fontsize=8)
        else:
            set_ticks([])
    axes.set(xlabel="latent dimension (most used first)", ylabel="perturbation",
             title=f"q(m = 1): {n_rows} perturbations x {n_columns} dimensions")
    return figure


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


def plot_calibration(coverage: Mapping[str, Mapping[float, float]], path: str | os.PathLike, *,
                     slopes: Mapping[str, float] | None = None) -> Path:
    """Calibration plot: observed coverage of credible intervals against their nominal level.

    Parameters
    ----------
    coverage
        One curve per interval kind, e.g. {"(b) predictive vs held-out cells": {0.5: 0.47, 0.9: 0.86, ...}}
        as in :func:`samsvae_pyro.evaluate.calibration.calibration_summary`'s "coverage".
    path
        Output PNG file.
    slopes
        Optional slope of the posterior-mean ATE against each curve's reference, shown in the legend.

    Returns
    -------
    The written path.
    """
    if not coverage:
        raise ValueError("coverage is empty; pass at least one {level: observed coverage} curve.")
    figure = Figure(figsize=(4.8, 4.4), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--", label="ideal")
    for name, curve in coverage.items():
        points = sorted((float(level), value) for level, value in curve.items())  # JSON keys may be strings
        label = name if not slopes or name not in slopes else f"{name} (slope {slopes[name]:.2f})"
        axes.plot(*zip(*points), marker="o", label=label)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage", ylabel="observed coverage",
             title="ATE interval calibration")
    axes.legend(fontsize=7, loc="upper left")
    return save_figure(figure, path)



def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write the figure as PNG (whole or not at all) and return its path."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return Path(path)

"""Figures of the latent-structure analysis, written as PNG files (issue 6).

Built on :class:`matplotlib.figure.Figure` like :mod:`samsvae_pyro.evaluate.plots`: no pyplot state, headless.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from samsvae_pyro.evaluate.plots import MAX_TICK_LABELS, save_figure
from samsvae_pyro.interpret.grouping import GroupingScore

_MAX_LEGEND = 20  # groups named in the legend
_UNGROUPED = (0.85, 0.85, 0.85, 1.0)


def plot_similarity_heatmap(similarity: pd.DataFrame, path: str | os.PathLike, *, order: np.ndarray | None = None,
                            groups: pd.Series | None = None, title: str = "perturbation similarity") -> Path:
    """Heatmap of a perturbation similarity, ordered by clustering, with an optional group colour strip.

    Parameters
    ----------
    similarity
        Output of :func:`~samsvae_pyro.interpret.perturbation_similarity`.
    path
        Output PNG file.
    order
        Row order, e.g. ``cluster_perturbations(...)["position"].argsort()``; default: as given.
    groups
        Group of each perturbation (``None`` / NaN when ungrouped), e.g. :func:`~samsvae_pyro.interpret.group_labels`.
    title
        Figure title.

    Returns
    -------
    The written path.

    Shapes
    ------
    similarity : (T, T); order : (T,).
    """
    order = np.arange(len(similarity)) if order is None else np.asarray(order)
    names = similarity.index[order]
    values = similarity.to_numpy(dtype=float)[np.ix_(order, order)]
    size = min(3 + 0.12 * len(names), 24)
    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    strip, axes = figure.subplots(1, 2, width_ratios=[1, 30], sharey=True)
    image = axes.imshow(values, vmin=-1, vmax=1, cmap="RdBu_r", interpolation="nearest", aspect="auto")
    figure.colorbar(image, ax=axes, label="similarity")
    legend = _group_strip(strip, groups.reindex(names) if groups is not None else None, len(names))
    if len(names) <= MAX_TICK_LABELS:
        axes.set_xticks(np.arange(len(names)), [str(n) for n in names], fontsize=6, rotation=90)
        strip.set_yticks(np.arange(len(names)), [str(n) for n in names], fontsize=6)
    else:
        axes.set_xticks([])
        strip.set_yticks([])
    if legend:
        figure.legend(handles=legend, loc="outside lower center", ncols=min(len(legend), 6), fontsize=6)
    axes.set(title=title, xlabel="perturbation (clustered)")
    return save_figure(figure, path)


def _group_strip(axes, groups: pd.Series | None, n: int) -> list[Patch]:
    """Colour strip of the groups beside the heatmap; returns the legend handles."""
    axes.set_xticks([])
    if groups is None:
        axes.imshow(np.zeros((n, 1)), cmap=ListedColormap([_UNGROUPED]), aspect="auto")
        return []
    names = sorted(pd.unique(groups.dropna()), key=str)
    codes = groups.map({g: i + 1 for i, g in enumerate(names)}).fillna(0).to_numpy(dtype=int)
    palette = colormaps["tab20"].resampled(max(len(names), 1))
    colours = [_UNGROUPED] + [palette(i) for i in range(len(names))]
    axes.imshow(codes[:, None], cmap=ListedColormap(colours), vmin=0, vmax=len(names), aspect="auto",
                interpolation="nearest")
    return [Patch(color=colours[i + 1], label=str(g)) for i, g in enumerate(names[:_MAX_LEGEND])]


def plot_grouping_null(score: GroupingScore, path: str | os.PathLike) -> Path:
    """Permutation null of each grouping statistic (histogram) with the observed value (vertical line).

    Parameters
    ----------
    score
        Output of :func:`~samsvae_pyro.interpret.grouping_score`.
    path
        Output PNG file.

    Returns
    -------
    The written path.
    """
    figure = Figure(figsize=(8, 3.4), layout="constrained")
    figure.suptitle(f"observed (red) against {len(score.null)} permutations of the group labels")
    for axes, name in zip(figure.subplots(1, len(score.null.columns)), score.null.columns):
        row = score.table.loc[name]
        axes.hist(score.null[name].dropna(), bins=30, color="grey")
        axes.axvline(row["observed"], color="crimson", linewidth=1.5)
        axes.set(xlabel=name.upper(), ylabel="permutations",
                 title=f"{name.upper()} {row['observed']:.3f} (z {row['z_score']:.1f}, p {row['p_value']:.3g})")
    return save_figure(figure, path)

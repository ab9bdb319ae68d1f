"""Figures of posterior predictive checks, one figure set for one or several runs (issue 16).

Each function takes {run name: check} and returns a :class:`matplotlib.figure.Figure` built without
pyplot state (nothing stays open, the user's backend is untouched); save it with ``figure.savefig``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from samsvae_pyro.evaluate.criticism.check import PosteriorPredictiveCheck
from samsvae_pyro.evaluate.criticism.statistics import statistic

Checks = Mapping[str, PosteriorPredictiveCheck]
GENE_PANELS = (("gene", "mean"), ("gene", "variance"), ("gene", "cv"), ("gene", "zero_fraction"))
PVALUE_PANELS = (("gene", "mean"), ("gene", "variance"), ("gene", "zero_fraction"), ("cell", "detected_genes"),
                 ("condition", "shift"), ("condition", "variance_change"), ("condition", "zero_fraction_change"),
                 ("interaction", "interaction"))
FLAGGED_COLOR, COLOR = "tab:red", "tab:blue"


def plot_observed_vs_replicated(checks: Checks, *, mode: str = "in_sample",
                                statistics: Sequence[tuple[str, str]] = GENE_PANELS,
                                threshold: float = 0.01) -> Figure:
    """Observed statistic (x) against its replicated mean and 90% interval (y), one row per run.

    Points with p < ``threshold`` are red; the dashed line is the diagonal (replicated = observed).
    """
    figure = Figure(figsize=(3.4 * len(statistics), 3.2 * len(checks)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(checks), len(statistics), squeeze=False))
    for row, (run, check) in zip(axes, checks.items()):
        for ax, (level, name) in zip(row, statistics):
            rows = check.select(level, name, mode=mode)
            flagged = (rows["p_value"] < threshold).to_numpy()
            x, y = rows["observed"].to_numpy(), rows["replicated_mean"].to_numpy()
            errors = np.abs(np.stack([y - rows["replicated_lower"].to_numpy(), rows["replicated_upper"].to_numpy() - y]))
            ax.errorbar(x, y, yerr=errors, fmt="none", ecolor="lightgrey", elinewidth=0.6, zorder=1)
            ax.scatter(x, y, s=6, c=np.where(flagged, FLAGGED_COLOR, COLOR), zorder=2, linewidths=0)
            low, high = np.nanmin(np.r_[x, y]), np.nanmax(np.r_[x, y])
            ax.plot([low, high], [low, high], "--", color="grey", linewidth=0.8)
            if statistic(level, name).log_scale:
                ax.set(xscale="symlog", yscale="symlog")
            ax.set(xlabel=f"observed {level} {name}", ylabel="replicated (mean, 90%)",
                   title=f"{run}: {flagged.mean():.0%} flagged")
    figure.suptitle(f"{_mode_label(mode)}: observed vs replicated, red p < {threshold}")
    return figure


def plot_condition_shifts(checks: Checks, *, conditions: Sequence[str] | None = None, mode: str = "generative",
                          n_genes: int = 20, threshold: float = 0.01) -> Figure:
    """Per-condition shift from control: each condition's most shifted genes (largest observed |shift|), the
    replicated 90% band and mean, and the observed shift (red: p < ``threshold``). One row per run.

    ``conditions`` default to the three conditions with the largest mean observed |shift|.
    """
    first = next(iter(checks.values())).select("condition", "shift", mode=mode)
    if conditions is None:
        size = first.assign(size=first["observed"].abs()).groupby("condition", observed=True)["size"].mean()
        conditions = list(size.sort_values(ascending=False).index[:3])
    figure = Figure(figsize=(4.2 * max(len(conditions), 1), 3.2 * len(checks)), layout="constrained")
    axes = figure.subplots(len(checks), max(len(conditions), 1), squeeze=False)
    for row, (run, check) in zip(axes, checks.items()):
        shifts = check.select("condition", "shift", mode=mode)
        for ax, condition in zip(row, conditions):
            rows = shifts[shifts["condition"] == condition]
            rows = rows.iloc[np.argsort(-rows["observed"].abs().to_numpy())[:n_genes]]
            rows = rows.sort_values("observed")
            position = np.arange(len(rows))
            ax.fill_between(position, rows["replicated_lower"], rows["replicated_upper"], color=COLOR, alpha=0.25,
                            label="replicated 90%")
            ax.plot(position, rows["replicated_mean"], color=COLOR, linewidth=1, label="replicated mean")
            flagged = (rows["p_value"] < threshold).to_numpy()
            ax.scatter(position, rows["observed"], c=np.where(flagged, FLAGGED_COLOR, "black"), s=12, zorder=3,
                       label="observed")
            ax.axhline(0, color="grey", linewidth=0.6)
            ax.set_xticks(position, rows["unit"].astype(str), rotation=90, fontsize=6)
            ax.set(ylabel="shift from control (log2)", title=f"{run}: {condition}")
        row[0].legend(fontsize=7)
    figure.suptitle(f"{_mode_label(mode)}: shift from control, red p < {threshold}")
    return figure


def plot_pvalue_histograms(checks: Checks, *, mode: str = "in_sample",
                           statistics: Sequence[tuple[str, str]] = PVALUE_PANELS) -> Figure:
    """Histograms of the predictive p-values of each statistic, runs overlaid; a calibrated model is near
    uniform (dotted line), a misspecified one piles up at 0.
    """
    columns = 4
    n_rows = -(-len(statistics) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.7 * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
    bins = np.linspace(0, 1, 21)
    for ax, (level, name) in zip(axes, statistics):
        for run, check in checks.items():
            p = check.select(level, name, mode=mode)["p_value"].dropna()
            if len(p):
                ax.hist(p, bins=bins, density=True, histtype="step", linewidth=1.2, label=run)
        ax.axhline(1, color="grey", linestyle=":", linewidth=0.8)
        ax.set(xlabel="p-value", title=f"{level} {name}")
    for ax in axes[len(statistics):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    figure.suptitle(f"{_mode_label(mode)}: posterior predictive p-values")
    return figure


def _mode_label(mode: str) -> str:
    return {"in_sample": "in-sample (z_basal from the encoder)",
            "generative": "generative (z_basal from the prior)"}.get(mode, mode)

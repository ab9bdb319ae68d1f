"""Calibrated treatment effects (issue 14): two questions, two intervals, and a check of both.

A user asks two different things of a model ATE, and each has its own interval:

(a) **population effect** (the true ATE): E[f(x) | t] - E[f(x) | control] under the model, whose
    uncertainty is the posterior over the global effects (E, M) only. Each global draw's expectation
    averages many (z_basal, x) samples at library 1e4 (:func:`~samsvae_pyro.evaluate.predictive.model_ate_draws`),
    so its Monte Carlo noise is small against the spread between draws. Checked against a simulator's true ATE.
(b) **data ATE of n new cells** (posterior predictive): the ATE computed, as :func:`~samsvae_pyro.evaluate.ate.data_ate`
    does, on replicates of a set of cells (same conditions, same library sizes, new z_basal and counts
    from the model) for each posterior draw of the globals; it adds the finite-sample noise of n cells.
    Checked against held-out cells' data ATE (:func:`predictive_ate_draws`).

Both run the one model under Pyro handlers (:mod:`samsvae_pyro.evaluate.predictive`). The summaries
(:func:`calibration_summary`) give coverage of equal-tailed intervals at several levels, Pearson r and
the slope of the posterior-mean ATE against the reference: a slope below 1 is shrinkage, which r hides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.evaluate.ate import ate_anndata, ate_transform, data_ate
from samsvae_pyro.evaluate.metrics import MIN_ABS_EFFECT, ate_slope, pearson
from samsvae_pyro.evaluate.predictive import chunks, model_ate_draws, sample_globals, sample_x

if TYPE_CHECKING:
    from samsvae_pyro.data import PerturbationData

LEVELS = (0.5, 0.8, 0.9, 0.95)


@torch.no_grad()
def predictive_ate_draws(model: Callable, guide: Callable, batch: Batch, D: Tensor, library: Tensor,
                         groups: Tensor, n_groups: int, *, n_draws: int = 200, method: str = "perturbseq",
                         max_elements: float = 2e7) -> Tensor:
    """Posterior-predictive data ATE of a set of cells: one replicate of the whole set per global draw.

    For each of ``n_draws`` posterior draws of the globals, every cell is replaced by a new one with the same
    dosage row and library size (z_basal from the prior, x from the model), and the group means of f(x) are
    differenced against the control group (the last group), as in :func:`~samsvae_pyro.evaluate.ate.data_ate`.

    Parameters
    ----------
    model, guide
        The Pyro model and guide.
    batch
        Any batch (the guide's global sites do not depend on it).
    D, library
        Dosage rows and library sizes of the cells to replicate.
    groups
        Group code of each cell in [0, n_groups); the control group is ``n_groups - 1``.
    n_groups
        Number of groups (conditions plus the control).
    n_draws
        Posterior draws of the globals, each one replicate of every cell.
    method
        The ATE transform ("perturbseq" or "mean").
    max_elements
        Bound on draws x cells x genes sampled at once.

    Returns
    -------
    ATE replicates, (n_draws, n_groups - 1, G).

    Shapes
    ------
    D : (N, T); library, groups : (N,).
    """
    transform = ate_transform(method)
    counts = torch.bincount(groups, minlength=n_groups).to(D.dtype)
    if (counts == 0).any():
        raise ValueError("every group needs at least one cell; drop the empty groups from the codes.")
    globals_ = sample_globals(guide, batch, n_draws)
    G, N = model.n_genes, D.shape[0]
    cell_chunk = int(max(1, min(N, max_elements // G)))
    draw_chunk = int(max(1, max_elements // (G * cell_chunk)))
    sums = torch.zeros(n_draws, n_groups, G, device=D.device)
    for rows in chunks(n_draws, draw_chunk):
        draws = globals_.take(rows)
        for cells in chunks(N, cell_chunk):
            fx = transform(sample_x(model, draws, D[cells], library[cells]))  # (r, n, G)
            sums[rows].index_add_(1, groups[cells], fx)
    means = sums / counts[:, None]
    return means[:, :-1] - means[:, -1:]


def interval_bounds(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``level`` interval over draws (axis 0). Shapes: (R, C, G) -> two (C, G)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lower, upper


def calibration_summary(draws: np.ndarray, reference: np.ndarray, *, levels: Sequence[float] = LEVELS,
                        min_abs: float = MIN_ABS_EFFECT, conditions: Sequence[str] | None = None) -> dict[str, Any]:
    """Coverage of the reference by equal-tailed intervals at each level, Pearson r and slope of the mean.

    Parameters
    ----------
    draws
        ATE draws (population or predictive).
    reference
        The ATE to cover: a simulator's true ATE for population draws, held-out cells' data ATE for
        predictive draws. Non-finite entries are skipped.
    levels
        Nominal interval levels.
    min_abs
        Entries with |reference| above it enter the slope.
    conditions
        Row labels for the per-condition table.

    Returns
    -------
    dict with "coverage" {level: fraction}, "pearson", "slope" (mean on reference: shrinkage against an exact
    reference such as a true ATE; a noisy reference such as held-out cells' data ATE pulls it below 1 even
    for a perfect model), "calibration_slope" (reference on mean, entries with |mean| > ``min_abs``: 1 when
    effects have their observed size whatever the noise of the reference, above 1 when the model's effects
    are too small), "n_entries", "n_slope_entries",
    "mean_width" {level: mean interval width}, and "per_condition" (DataFrame: coverage at each
    level, Pearson r and slope per condition).

    Shapes
    ------
    draws : (R, C, G). reference : (C, G).
    """
    draws, reference = np.asarray(draws, float), np.asarray(reference, float)
    if draws.shape[1:] != reference.shape:
        raise ValueError(f"draws of shape {draws.shape} do not match reference of shape {reference.shape}.")
    mean = draws.mean(0)
    finite = np.isfinite(reference) & np.isfinite(mean)
    coverage, width, per_condition = {}, {}, {}
    for level in levels:
        lower, upper = interval_bounds(draws, level)
        inside = np.where(finite, (lower <= reference) & (reference <= upper), np.nan)
        coverage[float(level)] = float(np.nanmean(inside))
        width[float(level)] = float((upper - lower)[finite].mean())
        per_condition[f"coverage_{int(round(level * 100))}"] = np.nanmean(inside, axis=1)
    per_condition["pearson"] = [pearson(m[f], r[f]) for m, r, f in zip(mean, reference, finite)]
    per_condition["slope"] = [ate_slope(m, r, min_abs=min_abs) for m, r in zip(mean, reference)]
    index = pd.Index(conditions if conditions is not None else range(len(reference)), name="condition")
    return {
        "coverage": coverage,
        "mean_width": width,
        "pearson": pearson(mean[finite], reference[finite]),
        "slope": ate_slope(mean, reference, min_abs=min_abs),
        "calibration_slope": ate_slope(reference, mean, min_abs=min_abs),
        "n_entries": int(finite.sum()),
        "n_slope_entries": int((finite & (np.abs(reference) > min_abs)).sum()),
        "per_condition": pd.DataFrame(per_condition, index=index),
    }


def ate_calibration(model: Callable, guide: Callable, data: PerturbationData, batch: Batch, cells: np.ndarray, *,
                    truth: Mapping[str, Any] | None = None, levels: Sequence[float] = LEVELS,
                    method: str = "perturbseq", n_global_draws: int = 100, samples_per_draw: int = 500,
                    n_predictive_draws: int = 200, min_abs: float = MIN_ABS_EFFECT,
                    min_cells: int = 1, ensemble: Sequence[tuple[Callable, Callable]] = ()) -> dict[str, Any]:
    """Both calibration checks of a trained model: (b) against held-out cells, (a) against a true ATE.

    Sampling uses the global random stream; seed it around the call for reproducible numbers.

    Parameters
    ----------
    model, guide
        The trained Pyro model and guide.
    data
        The perturbation dataset the cells come from.
    batch
        Any batch of ``data`` on the model's device (the guide's global sites do not depend on it).
    cells
        Row positions of the held-out cells whose data ATE is checked (they must include control cells),
        e.g. the test split.
    truth
        A simulator's truth (``adata.uns["sams_truth"]`` with "true_ate" and "true_ate_conditions"), to
        check the population intervals (a); ``None`` skips (a).
    levels
        Nominal interval levels.
    method
        ATE transform.
    n_global_draws, samples_per_draw
        Population draws (a): posterior draws of the globals, and (z_basal, x) samples averaged per draw.
    n_predictive_draws
        Predictive replicates (b) of the held-out cells.
    min_abs
        |reference| threshold of the slope.
    min_cells
        Conditions with fewer held-out cells are left out of (b).
    ensemble
        Further (model, guide) pairs fitted to the same data (e.g. other seeds): the draws of every pair are
        pooled with equal weight, a mixture of their posteriors, which adds the spread between fits (the
        decoder and encoder are point estimates, so one fit's intervals ignore their uncertainty).

    Returns
    -------
    dict with "predictive" (:func:`calibration_summary` against the held-out data ATE, plus
    "n_cells" per condition), "held_out" (the held-out cells' data ATE, AnnData), "predictive_ate"
    (AnnData: the posterior-predictive mean of that data ATE, layers "lower"/"upper" its 90% interval) and,
    with ``truth``, "population" (against the true ATE).
    """
    held_out = data_ate(data, method=method, cells=cells)
    held_out = held_out[np.asarray(held_out.obs["n_cells"]) >= min_cells]
    if held_out.n_obs == 0:
        raise ValueError(f"no condition has at least {min_cells} held-out cells; lower min_cells or hold out more cells.")
    conditions = list(held_out.obs_names)
    rows = np.sort(np.asarray(cells))
    labels = np.asarray(data.labels)[rows].astype(str)
    control = data.vocabulary.control_label
    keep = np.isin(labels, conditions) | (labels == control)
    rows, labels = rows[keep], labels[keep]
    device = batch["D"].device
    groups = torch.as_tensor(pd.Index(conditions + [control]).get_indexer(labels), device=device)
    D = torch.as_tensor(data.dosages[rows].toarray(), dtype=torch.float32, device=device)
    library = torch.as_tensor(np.asarray(data.library_size)[rows], dtype=torch.float32, device=device)
    fits = [(model, guide), *ensemble]
    predictive = np.concatenate([
        predictive_ate_draws(m, g, batch, D, library, groups, len(conditions) + 1, n_draws=n_predictive_draws,
                             method=method).cpu().numpy() for m, g in fits])
    out: dict[str, Any] = {"predictive": calibration_summary(predictive, np.asarray(held_out.X), levels=levels,
                                                             min_abs=min_abs, conditions=conditions)}
    out["predictive"]["per_condition"]["n_cells"] = np.asarray(held_out.obs["n_cells"])
    lower, upper = interval_bounds(predictive, 0.9)
    out["held_out"] = held_out
    out["predictive_ate"] = ate_anndata(predictive.mean(0), conditions, data.var_names,
                                        layers={"lower": lower, "upper": upper}, obs=held_out.obs)
    if truth is not None:
        true_conditions = [str(c) for c in truth["true_ate_conditions"]]
        D_true = torch.as_tensor(data.condition_dosages(true_conditions), dtype=torch.float32, device=device)
        population = np.concatenate([
            model_ate_draws(m, g, batch, D_true, n_global_draws=n_global_draws, samples_per_draw=samples_per_draw,
                            method=method).cpu().numpy() for m, g in fits])
        out["population"] = calibration_summary(population, np.asarray(truth["true_ate"]), levels=levels,
                                                min_abs=min_abs, conditions=true_conditions)
    return out

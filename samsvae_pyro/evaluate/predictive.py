"""Posterior-predictive and counterfactual sampling on the one model (docs/model.md, section 5).

Everything here runs the model itself under Pyro handlers: globals are drawn from the guide and fixed
with ``poutine.condition``; z_basal comes either from the model's prior (generative / ATE) or from
the guide's encoder applied to the user's source cells (counterfactual); x is the model's own sample.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from anndata import AnnData
from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.data.transforms import TARGET_LIBRARY, normalise_library
from samsvae_pyro.evaluate.ate import ate_transform
from samsvae_pyro.evaluate.posterior import guide_trace
from samsvae_pyro.models.plates import GLOBAL_SITES, X, Z_BASAL, particles_plate


class GlobalDraws(dict):
    """Values of the global sites for ``n_draws`` independent draws, each (n_draws, T, K), by site name.

    A dict (for ``poutine.condition``) that also knows the number of draws, which a family without
    global sites (the conditional VAE: an empty dict) still needs.
    """

    def __init__(self, values: dict[str, Tensor], n_draws: int):
        super().__init__(values)
        self.n_draws = n_draws

    def take(self, rows: slice) -> GlobalDraws:
        """The draws at ``rows`` (a slice of the first dimension), as GlobalDraws."""
        return GlobalDraws({name: value[rows] for name, value in self.items()}, rows.stop - rows.start)


def sample_globals(guide: Callable, batch: Batch, n_draws: int) -> GlobalDraws:
    """n_draws independent draws of the global sites from the guide. Shapes: each (n_draws, T, K)."""
    trace = guide_trace(guide, batch, n_draws)
    return GlobalDraws({name: trace.nodes[name]["value"] for name in GLOBAL_SITES if name in trace.nodes}, n_draws)


@torch.no_grad()
def sample_x(model: Callable, globals_: GlobalDraws, D: Tensor, library: Tensor,
             z_basal: Tensor | None = None, *, shared_mixing_period: int | None = None) -> Tensor:
    """x ~ p(x | z_basal, D, globals) with z_basal from the prior unless given.

    ``shared_mixing_period``: cells that many rows apart share the count noise's Gamma mixing variable
    (see :class:`SharedCountMixing`); each cell's distribution is unchanged.

    Shapes
    ------
    globals_ : each (R, T, K); D : (C, T); library : (C,); z_basal : (R, C, K) or None; returns (R, C, G).
    """
    n_draws, n_cells = globals_.n_draws, D.shape[0]
    data = dict(globals_) if z_basal is None else {**globals_, Z_BASAL: z_basal}
    batch = {"x": None, "D": D, "library": library, "n_cells": n_cells,
             "index": torch.arange(n_cells, device=D.device)}
    sharing = SharedCountMixing(shared_mixing_period) if shared_mixing_period else contextlib.nullcontext()
    with sharing, particles_plate(n_draws):
        trace = poutine.trace(poutine.condition(model, data=data)).get_trace(batch)
    return trace.nodes[X]["value"]


class SharedCountMixing(Messenger):
    """Common random numbers for treatment effects: at the unobserved site x, draw counts with
    ``fn.sample_shared_mixing(period)`` when the observation distribution offers it (the nb likelihood).

    In the ATE the rows are conditions x replicates (replicate fastest); sharing the negative binomial's
    Gamma mixing variable between the conditions of a replicate leaves every condition's counts exactly
    NB-distributed and draws ``period`` instead of ``C x period`` Gamma variables (the costliest part of the ATE).
    """

    def __init__(self, period: int):
        super().__init__()
        self.period = period

    def _pyro_sample(self, msg):
        fn = msg["fn"]
        if msg["name"] == X and not msg["is_observed"] and hasattr(fn, "sample_shared_mixing"):
            msg["value"] = fn.sample_shared_mixing(self.period)
            msg["done"] = True


@torch.no_grad()
def local_posterior(guide: Callable, batch: Batch, globals_: GlobalDraws) -> poutine.Trace:
    """Trace of the guide on ``batch`` with its global sites fixed to ``globals_`` (one particle per draw)."""
    with particles_plate(globals_.n_draws):
        return poutine.trace(poutine.condition(guide, data=globals_)).get_trace(batch)


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``size`` elements."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def mean_transformed(model: Callable, globals_: GlobalDraws, D: Tensor, *, replicates: int,
                     transform: Callable[[Tensor], Tensor], max_elements: float = 2e7) -> Tensor:
    """E[f(x)] per global draw and condition, averaging ``replicates`` (z_basal, x) samples.

    Replicate j of every condition shares the count noise's Gamma mixing variable (common random numbers,
    :class:`SharedCountMixing`): each condition's estimate has its exact distribution, at a fraction of the cost.

    Shapes
    ------
    D : (C, T) condition dosages; returns (R, C, G) for R global draws.
    """
    n_draws, n_conditions = globals_.n_draws, D.shape[0]
    G = model.n_genes
    per_condition = replicates * G
    cond_chunk = int(max(1, min(n_conditions, max_elements // per_condition)))
    draw_chunk = int(max(1, max_elements // (per_condition * cond_chunk)))
    out = torch.empty(n_draws, n_conditions, G, device=D.device)
    with pyro.validation_enabled(False):  # parameter checks on every chunk cost more than they catch here
        for rows in chunks(n_draws, draw_chunk):
            for cols in chunks(n_conditions, cond_chunk):
                d = D[cols].repeat_interleave(replicates, 0)  # (c * M, T)
                library = torch.full((d.shape[0],), TARGET_LIBRARY, device=D.device)
                x = sample_x(model, globals_.take(rows), d, library, shared_mixing_period=replicates)
                fx = transform(x)  # (r, c * M, G)
                out[rows, cols] = fx.reshape(fx.shape[0], -1, replicates, G).mean(2)
    return out


@torch.no_grad()
def model_ate_draws(model: Callable, guide: Callable, batch: Batch, D: Tensor, *, n_global_draws: int = 50,
                    samples_per_draw: int = 50, method: str = "perturbseq", max_elements: float = 2e7) -> Tensor:
    """Model ATE of each condition for each of ``n_global_draws`` independent posterior draws of (E, M).

    Each draw's ATE averages ``samples_per_draw`` (z_basal ~ prior, x ~ p(x | z, l = 1e4)) samples and
    subtracts the control (d = 0) mean, which does not depend on the globals and is estimated once
    from ``n_global_draws * samples_per_draw`` samples. The mean over draws uses S = n_global_draws x
    samples_per_draw particles (the paper's S = 2500 is 50 x 50).

    Shapes
    ------
    D : (C, T); returns (R, C, G).
    """
    transform = ate_transform(method)
    globals_ = sample_globals(guide, batch, n_global_draws)
    perturbed = mean_transformed(model, globals_, D, replicates=samples_per_draw, transform=transform,
                                 max_elements=max_elements)
    control = mean_transformed(model, globals_, torch.zeros_like(D[:1]), replicates=samples_per_draw,
                               transform=transform, max_elements=max_elements).mean(0)  # (1, G)
    return perturbed - control


def summarise_draws(draws: Tensor, *, interval: float = 0.9) -> dict[str, np.ndarray]:
    """Posterior mean and equal-tailed credible interval over global draws. Shapes: (R, C, G) -> (C, G) each."""
    if not 0 < interval < 1:
        raise ValueError(f"interval must lie in (0, 1), got {interval}.")
    tail = (1 - interval) / 2
    values = draws.cpu().numpy()
    lower, upper = np.quantile(values, [tail, 1 - tail], axis=0)
    return {"mean": values.mean(0), "lower": lower, "upper": upper}


@torch.no_grad()
def generative_counts(model: Callable, guide: Callable, batch: Batch, D: Tensor, *, n_cells: int,
                      library: float) -> Tensor:
    """Cells drawn under each condition: z_basal from the prior, one posterior draw of the globals per cell.

    Shapes
    ------
    D : (C, T); returns (C * n_cells, G), condition-major.
    """
    globals_ = sample_globals(guide, batch, n_cells)
    x = sample_x(model, globals_, D, torch.full((D.shape[0],), float(library), device=D.device))  # (n, C, G)
    return x.transpose(0, 1).reshape(-1, x.shape[-1])


@torch.no_grad()
def counterfactual_counts(model: Callable, guide: Callable, batches: Iterable[Batch],
                          D: Tensor) -> tuple[Tensor, Tensor]:
    """Each source cell's inferred z_basal, shifted to each condition, then x drawn at its library size.

    Returns the counts, condition-major, and the source cells' ``index`` in the order used.

    Shapes
    ------
    D : (C, T); returns (C * N, G) and (N,) for the N cells of ``batches``.
    """
    counts, cells = [], []
    C = D.shape[0]
    for batch in batches:
        globals_ = sample_globals(guide, batch, 1)
        z_basal = local_posterior(guide, batch, globals_).nodes[Z_BASAL]["value"]  # (1, B, K)
        B = len(batch["index"])
        x = sample_x(model, globals_, D.repeat_interleave(B, 0), batch["library"].repeat(C),
                     z_basal=z_basal.repeat(1, C, 1))  # (1, C * B, G)
        counts.append(x[0].reshape(C, B, -1))
        cells.append(batch["index"])
    return torch.cat(counts, 1).reshape(-1, model.n_genes), torch.cat(cells)


def prediction_anndata(counts: Tensor, obs: pd.DataFrame, var_names) -> AnnData:
    """Predicted cells as AnnData: counts in ``layers["counts"]``, log1p of counts normalised to the target
    library in ``X``, ``obs`` as given (its index renamed ``pred_i``). Shapes: counts (N, G)."""
    counts = counts.cpu().numpy().astype(np.float32)
    obs.index = [f"pred_{i}" for i in range(len(obs))]
    return AnnData(X=np.log1p(normalise_library(counts)), obs=obs, var=pd.DataFrame(index=var_names),
                   layers={"counts": counts})

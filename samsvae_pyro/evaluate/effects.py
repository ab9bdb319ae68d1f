"""Posterior perturbation effects on the latent state, read from the model itself (issue 6, latent structure).

The effect of perturbation t is the latent shift the model gives a cell with dosage d = 1_t:
e_t * m_t for SAMS-VAE (docs/model.md, section 1), e_t for CPA-VAE. It is read as the model's return value z
when the model runs with the guide's global draws conditioned, z_basal conditioned to zero and the
identity dosage, so every family that shifts its latent state per perturbation is handled without
re-deriving its generative process. The posterior mean is averaged per joint draw of the globals,
E_q[e_t * m_t], not E_q[e_t] * E_q[m_t]: under the correlated guide q(e_t | m_t) the two differ.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from pyro import poutine
from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.evaluate.posterior import guide_trace, site_mean
from samsvae_pyro.models.plates import GLOBAL_SITES, MASK, Z_BASAL, particles_plate

_MAX_ELEMENTS = 2e7  # draws x perturbations x genes of one model trace


@torch.no_grad()
def posterior_effects(model: Any, guide: Callable, batch: Batch, *,
                      n_samples: int = 100) -> tuple[Tensor, Tensor | None]:
    """Posterior mean effects E_q[e_tk m_tk] and inclusion probabilities q(m_tk = 1).

    Parameters
    ----------
    model, guide
        The Pyro model (a family of :mod:`samsvae_pyro.models`) and its trained guide.
    batch
        Any batch of the data (only the global sites of the guide are read).
    n_samples
        Joint posterior draws of the global sites (E, M) averaged.

    Returns
    -------
    effects
        Posterior mean latent shift of each perturbation.
    inclusion
        q(m_tk = 1), or ``None`` for a family without a mask (M fixed to one).

    Shapes
    ------
    effects, inclusion : (T, K).

    Examples
    --------
    >>> from samsvae_pyro import SAMSVAE, simulate_counts
    >>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=20, n_genes=10, n_ate_samples=10)
    >>> SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting")
    >>> trained = SAMSVAE(adata, n_latent=4, n_hidden=8, device="cpu")
    >>> effects, inclusion = posterior_effects(trained.model, trained.guide, trained.example_batch(1), n_samples=5)
    >>> tuple(effects.shape), tuple(inclusion.shape)
    ((3, 4), (3, 4))
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}.")
    trace = guide_trace(guide, batch, n_samples)
    globals_ = {name: trace.nodes[name]["value"] for name in GLOBAL_SITES if name in trace.nodes}
    if not globals_:
        raise ValueError(f"{type(model).__name__} has no per-perturbation latent effects (no global sites); "
                         "latent structure needs a family such as SAMSVAE or CPAVAE.")
    effects = _latent_shifts(model, globals_, n_samples, batch["D"].device)  # (T, K)
    return effects, site_mean(trace, MASK) if MASK in trace.nodes else None


def _latent_shifts(net: Any, globals_: dict[str, Tensor], n_samples: int, device: torch.device) -> Tensor:
    """Mean over draws of the model's z for z_basal = 0 and dosage 1_t, in chunks of draws.

    Shapes: globals_ each (S, T, K); returns (T, K).
    """
    T, G = net.n_perturbations, net.n_genes
    batch = {"x": torch.zeros(T, G, device=device), "D": torch.eye(T, device=device),
             "library": torch.ones(T, device=device), "n_cells": T, "index": torch.arange(T, device=device)}
    step, total = max(1, int(_MAX_ELEMENTS // (T * G))), 0.0
    for start in range(0, n_samples, step):
        draws = {name: value[start:start + step] for name, value in globals_.items()}
        n = next(iter(draws.values())).shape[0]
        data = {**draws, Z_BASAL: torch.zeros(n, T, net.n_latent, device=device)}
        with particles_plate(n):
            z = poutine.trace(poutine.condition(net, data=data)).get_trace(batch).nodes["_RETURN"]["value"]
        total = total + z.sum(0)  # (T, K)
    return total / n_samples

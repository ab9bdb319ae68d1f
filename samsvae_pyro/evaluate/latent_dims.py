"""What each latent dimension means: the perturbations that switch it on and the genes it moves (issue 6).

- Perturbations: ranked by the posterior inclusion probability q(m_tk = 1) (by |E_q[e_tk m_tk]| for a
  family without a mask), with their mean effect, whose sign says the direction of the shift.
- Genes: the decoder response to a unit shift along dimension k, averaged over basal states,

      response_kg = mean_i [ f(E[x_g | z_i + shift * 1_k, l]) - f(E[x_g | z_i, l]) ],  z_i ~ p(z_basal),

  with l = 1e4 and f = log2(1 + .) for count likelihoods (the units of the "perturbseq" ATE: log2 fold
  change of normalised expression) or the identity for the normal likelihood. Both the basal states
  and the means come from traces of the model itself (zero dosage, z_basal conditioned, x observed as
  zeros so that nothing is sampled): no part of the decoder or the likelihood head is re-implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from pyro import poutine
from torch import Tensor

from samsvae_pyro.data.transforms import TARGET_LIBRARY, ate_method, ate_transform
from samsvae_pyro.models.plates import X, Z_BASAL


@torch.no_grad()
def decoder_response(model: Any, *, device: torch.device, n_basal: int = 256, shift: float = 1.0) -> Tensor:
    """Mean change of each gene's expected expression when one latent dimension is shifted by ``shift``.

    Parameters
    ----------
    model
        The Pyro model (a family of :mod:`samsvae_pyro.models`) that samples ``z_basal``.
    device
        Device of the model's parameters.
    n_basal
        Basal states z_basal ~ N(0, I) drawn from the model's prior and averaged over.
    shift
        Size of the shift along each dimension, in prior standard deviations.

    Returns
    -------
    One row per latent dimension, one column per gene (see the module docstring for the units).

    Shapes
    ------
    returns (K, G).

    Examples
    --------
    >>> from samsvae_pyro.models import SAMSVAEModel
    >>> tuple(decoder_response(SAMSVAEModel(10, 3, 4, n_hidden=8), device=torch.device("cpu"), n_basal=16).shape)
    (4, 10)
    """
    if n_basal < 1:
        raise ValueError(f"n_basal must be a positive integer, got {n_basal}.")
    rows = []
    z_basal, mean, transform = _expected_expression(model, n_basal, device)  # (n, K), (n, G)
    baseline = transform(mean)
    for k in range(z_basal.shape[-1]):
        shifted = z_basal.clone()
        shifted[:, k] += shift
        _, mean, _ = _expected_expression(model, n_basal, device, shifted)
        rows.append((transform(mean) - baseline).mean(0))  # (G,)
    return torch.stack(rows)


def _expected_expression(net: Any, n: int, device: torch.device, z_basal: Tensor | None = None):
    """One model trace of n control cells at library 1e4: (z_basal, E[x | z], f).

    Shapes: z_basal (n, K) or None (drawn from the prior); returns (n, K), (n, G) and the map f.
    """
    batch = {"x": torch.zeros(n, net.n_genes, device=device), "D": torch.zeros(n, net.n_perturbations, device=device),
             "library": torch.full((n,), TARGET_LIBRARY, device=device), "n_cells": n,
             "index": torch.arange(n, device=device)}
    program = net if z_basal is None else poutine.condition(net, data={Z_BASAL: z_basal})
    trace = poutine.trace(program).get_trace(batch)
    fn = trace.nodes[X]["fn"]
    transform = ate_transform(ate_method(net.head.is_count))
    return trace.nodes[Z_BASAL]["value"], fn.mean, transform


def perturbations_per_dim(effects: pd.DataFrame, inclusion: pd.DataFrame | None = None, *,
                          top_n: int = 10) -> pd.DataFrame:
    """For each latent dimension, the perturbations that switch it on, most probable first.

    Parameters
    ----------
    effects
        Posterior mean effects E_q[e_tk m_tk] (:meth:`~samsvae_pyro.api.base.PerturbationModel.posterior_effects`).
    inclusion
        q(m_tk = 1) in the same layout; ``None`` ranks by |effect| instead.
    top_n
        Perturbations listed per dimension.

    Returns
    -------
    Long table with columns latent_dim, rank (1 = first), perturbation, inclusion_prob (NaN without a
    mask), effect.

    Shapes
    ------
    effects, inclusion : (T, K); returns at most K * top_n rows.
    """
    _check_top_n(top_n)
    score = inclusion if inclusion is not None else effects.abs()
    probability = inclusion if inclusion is not None else effects * np.nan
    frames = []
    for dim in effects.columns:
        order = np.lexsort((-effects[dim].abs().to_numpy(), -score[dim].to_numpy()))[:top_n]
        frames.append(pd.DataFrame({"latent_dim": dim, "rank": np.arange(1, len(order) + 1),
                                    "perturbation": effects.index[order],
                                    "inclusion_prob": probability[dim].to_numpy()[order],
                                    "effect": effects[dim].to_numpy()[order]}))
    return pd.concat(frames, ignore_index=True)


def genes_per_dim(response: pd.DataFrame, *, top_n: int = 20) -> pd.DataFrame:
    """For each latent dimension, the genes its unit shift moves most, largest |response| first.

    Parameters
    ----------
    response
        Output of :func:`decoder_response`.
    top_n
        Genes listed per dimension.

    Returns
    -------
    Long table with columns latent_dim, rank (1 = first), gene, response (signed).

    Shapes
    ------
    response : (K, G); returns at most K * top_n rows.
    """
    _check_top_n(top_n)
    frames = []
    for dim, values in response.iterrows():
        order = np.argsort(-values.abs().to_numpy(), kind="stable")[:top_n]
        frames.append(pd.DataFrame({"latent_dim": dim, "rank": np.arange(1, len(order) + 1),
                                    "gene": response.columns[order], "response": values.to_numpy()[order]}))
    return pd.concat(frames, ignore_index=True)


def _check_top_n(top_n: int) -> None:
    if top_n < 1:
        raise ValueError(f"top_n must be a positive integer, got {top_n}.")

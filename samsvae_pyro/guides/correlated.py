"""Correlated guide q(M) q(E | M) q(z_basal | x, D, E, M) (docs/model.md, section 2)."""

from __future__ import annotations

import math

import torch
from pyro import distributions as dist
from torch import Tensor, nn

from samsvae_pyro.guides.base import SAMSGuide
from samsvae_pyro.nn import MLP, gaussian_params


class CorrelatedGuide(SAMSGuide):
    """q(M) q(E | M) prod_i q(z_basal_i | ...), with q(e_t | m_t) = Normal(f([m_t, onehot(t)])).

    f is an MLP shared across perturbations. Its first layer applied to onehot(t) is a learned
    per-perturbation vector, stored as ``perturbation_code`` (T, H) instead of a (T, H) matmul.

    Parameters
    ----------
    embedding_hidden, embedding_layers
        Width and depth of f (paper: 200 x 2 for Replogle, 400 x 4 for Norman).
    **kwargs
        See :class:`SAMSGuide`.
    """

    def __init__(self, model, *, embedding_hidden: int = 200, embedding_layers: int = 2, **kwargs):
        super().__init__(model, **kwargs)
        n_in = model.n_latent + model.n_perturbations
        bound = 1.0 / math.sqrt(n_in)
        self.perturbation_code = nn.Parameter(torch.empty(model.n_perturbations, embedding_hidden).uniform_(-bound, bound))
        self.embedding_net = MLP(
            (model.n_latent,), 2 * model.n_latent, n_hidden=embedding_hidden, n_layers=embedding_layers,
            activation=kwargs.get("activation", "leaky_relu"),
        )

    def embedding_posterior(self, mask: Tensor | None) -> dist.TorchDistribution:
        if mask is None:
            mask = self.perturbation_code.new_ones(self.n_perturbations, self.n_latent)
        loc, scale = gaussian_params(self.embedding_net(mask, shift=self.perturbation_code))  # (S, T, K)
        return dist.Normal(loc, scale).to_event(1)

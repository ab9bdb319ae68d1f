"""Mean-field guide q(M) q(E) q(z_basal | x, D, E, M) (docs/model.md, section 2)."""

from __future__ import annotations

import torch
from pyro import distributions as dist
from torch import Tensor, nn

from samsvae_pyro.guides.base import SAMSGuide


class MeanFieldGuide(SAMSGuide):
    """q(M) q(E) prod_i q(z_basal_i | x_i, d_i (E * M)) with q(e_tk) = Normal(mu_tk, exp(log s_tk) + 1e-4).

    mu is initialised at 0 and s at 1, as in the paper. See :class:`SAMSGuide` for the arguments.
    """

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.E_loc = nn.Parameter(torch.zeros(model.n_perturbations, model.n_latent))
        self.E_log_scale = nn.Parameter(torch.zeros(model.n_perturbations, model.n_latent))

    def embedding_posterior(self, mask: Tensor | None) -> dist.TorchDistribution:
        return dist.Normal(self.E_loc, self.E_log_scale.exp() + 1e-4).to_event(1)

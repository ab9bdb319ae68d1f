"""Conditional VAE (docs/model.md, section 4): no global latents, the dosages enter the decoder directly.

The cell latent is the site ``z_basal`` (it is the perturbation-independent state here too), so the
shared evaluation path (IWELBO, ATE, counterfactual prediction) applies unchanged. Deviations: none.
"""

from __future__ import annotations

import pyro
import torch
from pyro import distributions as dist
from pyro.nn import PyroModule
from torch import Tensor

from samsvae_pyro._typing import Batch, Likelihood
from samsvae_pyro.models.plates import X, Z_BASAL, cells_plate
from samsvae_pyro.nn import MLP, LikelihoodHead


class ConditionalVAEModel(PyroModule):
    r"""prod_i p(z_i) p(x_i | MLP([z_i, d_i]), l_i).

    .. math::
        z_i \sim N(0, I_K), \quad x_i \sim p(x \mid \mathrm{MLP}([z_i, d_i]), l_i).

    ============  ===================  ===========  =========================================
    site          plate (dim)          event shape  distribution
    ============  ===================  ===========  =========================================
    z_basal       cells (-1)           (K,)         Normal(0, 1)
    x             cells (-1)           (G,)         nb / poisson / normal given z, d and library
    ============  ===================  ===========  =========================================

    Parameters
    ----------
    n_genes, n_perturbations, n_latent
        G, T, K.
    likelihood
        ``"nb"`` (paper), ``"poisson"`` or ``"normal"``.
    n_hidden, n_layers, activation
        Decoder MLP; its first layer takes the blocks z (K) and d (T).
    """

    mask_prior = None  # no mask; guides written for a mask then add sites that check_guide names as extra

    def __init__(
        self, n_genes: int, n_perturbations: int, n_latent: int, *, likelihood: Likelihood = "nb",
        n_hidden: int = 400, n_layers: int = 1, activation: str = "leaky_relu",
    ):
        super().__init__()
        if n_latent < 1:
            raise ValueError(f"n_latent must be a positive integer, got {n_latent}.")
        self.n_genes, self.n_perturbations, self.n_latent = n_genes, n_perturbations, n_latent
        self.head = LikelihoodHead(likelihood, n_genes)
        self.decoder = MLP((n_latent, n_perturbations), self.head.n_outputs, n_hidden=n_hidden, n_layers=n_layers,
                           activation=activation)
        self.register_buffer("_zeros", torch.zeros(n_latent))

    @property
    def likelihood(self) -> str:
        return self.head.likelihood

    def basal_prior(self) -> dist.TorchDistribution:
        return dist.Normal(self._zeros, 1.0).to_event(1)

    def observation(self, z: Tensor, D: Tensor, library: Tensor) -> dist.TorchDistribution:
        """p(x | z, d, l). Shapes: z (..., B, K), D (B, T), library (B,)."""
        return self.head(self.decoder(z, D), library)

    def forward(self, batch: Batch) -> Tensor:
        """Run the generative program on a batch (x observed, or sampled when ``batch["x"] is None``).

        Returns z, (..., B, K).
        """
        with cells_plate(batch):
            z = pyro.sample(Z_BASAL, self.basal_prior())  # (S, B, K)
            pyro.sample(X, self.observation(z, batch["D"], batch["library"]), obs=batch["x"])
        return z

"""SVAE+ (docs/model.md, section 4; Lopez et al. 2022, sparse mechanism shift): a learned shift, sparsely masked.

The paper writes z_i ~ N(m_t(i) * mu_t(i), I). Here the model samples z_basal_i ~ N(0, I) and sets
z_i = z_basal_i + d_i (M * mu), the same distribution, so that every family shares the site z_basal
and the evaluation path (IWELBO, ATE, counterfactual prediction) is the same. The guide's
q(z_basal | x~, d, M) = N(enc_mu(x~) - d (M * mu), enc_sigma(x~)) is then exactly the paper's
q(z | x~) moved by the shift.

Built from :class:`~samsvae_pyro.models.sams_vae.SAMSVAEModel`: pi is its Beta-Bernoulli
``mask_prob`` with prior mean 1 / (1 + beta), and E is replaced by the parameter mu.
Deviations: with the "sum" encoding the shifts of several perturbations would add up; that
composition is not SVAE+, so the user class refuses cells with more than one perturbation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from samsvae_pyro._typing import Likelihood
from samsvae_pyro.models.sams_vae import SAMSVAEModel


class SVAEPlusModel(SAMSVAEModel):
    r"""p(pi) p(M | pi) prod_i p(z_basal_i) p(x_i | z_basal_i + d_i (M * mu), l_i), mu a (T, K) parameter.

    .. math::
        \pi_{tk} \sim \mathrm{Beta}(1, \beta), \quad m_{tk} \sim \mathrm{Bernoulli}(\pi_{tk}), \quad
        z_i = z^{basal}_i + m_{t(i)} \odot \mu_{t(i)}, \quad z^{basal}_i \sim N(0, I_K), \quad
        x_i \sim p(x \mid \mathrm{MLP}(z_i), l_i),

    with z_i = z_basal_i for control cells. mu (``shift``) is a point estimate, not a sample site.

    ============  ===================  ===========  =========================================
    site          plate (dim)          event shape  distribution
    ============  ===================  ===========  =========================================
    mask_prob     perturbations (-1)   (K,)         Beta(1, beta)
    mask          perturbations (-1)   (K,)         Bernoulli(mask_prob)
    z_basal       cells (-1)           (K,)         Normal(0, 1)
    x             cells (-1)           (G,)         nb / poisson / normal given z and library
    ============  ===================  ===========  =========================================

    Parameters
    ----------
    n_genes, n_perturbations, n_latent
        G, T, K.
    beta
        Sparsity of the Beta(1, beta) prior on pi (paper sweep: 2, 5, 10; prior mean 1 / (1 + beta)).
    likelihood, n_hidden, n_layers, activation
        As for :class:`~samsvae_pyro.models.sams_vae.SAMSVAEModel`.
    """

    def __init__(
        self, n_genes: int, n_perturbations: int, n_latent: int, *, beta: float = 5.0, likelihood: Likelihood = "nb",
        n_hidden: int = 400, n_layers: int = 1, activation: str = "leaky_relu",
    ):
        if not beta > 0:
            raise ValueError(f"beta must be positive (paper: 2, 5 or 10), got {beta}.")
        super().__init__(n_genes, n_perturbations, n_latent, likelihood=likelihood, mask_prior="beta_bernoulli",
                         mask_prior_prob=1.0 / (1.0 + beta), n_hidden=n_hidden, n_layers=n_layers,
                         activation=activation)
        self.beta = beta
        self.shift = nn.Parameter(torch.zeros(n_perturbations, n_latent))  # mu, (T, K)

    def sample_embedding(self) -> Tensor:
        """The shifts mu: a parameter, so nothing is sampled. Returns (T, K)."""
        return self.shift

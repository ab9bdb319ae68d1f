"""CPA-VAE (docs/model.md, section 4): SAMS-VAE with the mask fixed to one.

Built from :class:`~samsvae_pyro.models.sams_vae.SAMSVAEModel` with ``mask_prior=None``; nothing is
re-implemented. Deviations from the paper: none.
"""

from __future__ import annotations

from samsvae_pyro._typing import Likelihood
from samsvae_pyro.models.sams_vae import SAMSVAEModel


class CPAVAEModel(SAMSVAEModel):
    r"""p(E) prod_i p(z_basal_i) p(x_i | z_basal_i + d_i E, l_i): SAMS-VAE with M = 1.

    .. math::
        e_{tk} \sim N(0, \sigma_e^2), \quad z_i = z^{basal}_i + \textstyle\sum_t d_{it}\, e_t, \quad
        z^{basal}_i \sim N(0, I_K), \quad x_i \sim p(x \mid \mathrm{MLP}(z_i), l_i).

    ============  ===================  ===========  =========================================
    site          plate (dim)          event shape  distribution
    ============  ===================  ===========  =========================================
    E             perturbations (-1)   (K,)         Normal(0, sigma_e)
    z_basal       cells (-1)           (K,)         Normal(0, 1)
    x             cells (-1)           (G,)         nb / poisson / normal given z and library
    ============  ===================  ===========  =========================================

    Parameters
    ----------
    n_genes, n_perturbations, n_latent
        G, T, K.
    likelihood, embedding_prior_scale, n_hidden, n_layers, activation
        As for :class:`~samsvae_pyro.models.sams_vae.SAMSVAEModel`.
    """

    def __init__(
        self, n_genes: int, n_perturbations: int, n_latent: int, *, likelihood: Likelihood = "nb",
        embedding_prior_scale: float = 1.0, n_hidden: int = 400, n_layers: int = 1, activation: str = "leaky_relu",
    ):
        super().__init__(n_genes, n_perturbations, n_latent, likelihood=likelihood, mask_prior=None,
                         embedding_prior_scale=embedding_prior_scale, n_hidden=n_hidden, n_layers=n_layers,
                         activation=activation)

"""SAMSVAE: the user-facing SAMS-VAE (docs/model.md, sections 1 to 3).

Example
-------
>>> from samsvae_pyro import SAMSVAE, simulate_counts
>>> adata = simulate_counts(n_perturbations=4, cells_per_perturbation=20, n_genes=10, seed=0)
>>> SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> model = SAMSVAE(adata, n_latent=4, n_hidden=16, device="cpu")
>>> history = model.train(max_steps=2, batch_size=32, progress=False)
>>> model.mask_probabilities().shape
(4, 4)
"""

from __future__ import annotations

from anndata import AnnData

from samsvae_pyro._typing import GuideFactory, Likelihood, MaskPrior, SAMSGuideName
from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.defaults import N_HIDDEN, N_LATENT, mask_prior_prob as default_mask_prior_prob
from samsvae_pyro.models import SAMSVAEModel


class SAMSVAE(PerturbationModel):
    """SAMS-VAE: z = z_basal + D (E * M), x ~ p(x | MLP(z), l).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        K.
    guide
        ``"correlated"`` (q(M) q(E | M) q(z_basal | .)), ``"mean_field"``, a guide module, or a factory.
    likelihood
        ``"nb"`` (paper), ``"poisson"`` or ``"normal"`` (non-count data).
    mask_prior
        ``"bernoulli"`` (paper) or ``"beta_bernoulli"``.
    mask_prior_prob
        alpha; default ``1 / n_latent``, one latent dimension per perturbation expected a priori (the paper's
        0.01 with 100 dimensions). The other defaults are a small screen's (:mod:`samsvae_pyro.defaults`).
    n_hidden, n_layers, activation
        Decoder MLP; registered guides use the same sizes for their encoder unless ``guide_kwargs`` say otherwise.
    **kwargs
        ``embedding_prior_scale``, ``guide_kwargs``, ``device``.
    """

    def __init__(self, adata: AnnData, *, n_latent: int = N_LATENT, guide: SAMSGuideName | GuideFactory = "correlated",
                 likelihood: Likelihood = "nb", mask_prior: MaskPrior = "bernoulli", mask_prior_prob: float | None = None,
                 n_hidden: int = N_HIDDEN, n_layers: int = 1, activation: str = "leaky_relu", **kwargs):
        if mask_prior_prob is None:
            mask_prior_prob = default_mask_prior_prob(n_latent)
        super().__init__(adata, guide=guide, n_latent=n_latent, likelihood=likelihood,
                         mask_prior=mask_prior, mask_prior_prob=mask_prior_prob, n_hidden=n_hidden,
                         n_layers=n_layers, activation=activation, **kwargs)

    def _build_model(self, **model_kwargs) -> SAMSVAEModel:
        return SAMSVAEModel(self.data.n_genes, self.data.n_perturbations, **model_kwargs)

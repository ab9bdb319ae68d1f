"""CPAVAE: the user-facing CPA-VAE baseline, SAMS-VAE with the mask fixed to one (docs/model.md, section 4).

Example
-------
>>> from samsvae_pyro import CPAVAE, simulate_counts
>>> adata = simulate_counts(n_perturbations=4, cells_per_perturbation=20, n_genes=10, seed=0)
>>> CPAVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> model = CPAVAE(adata, n_latent=4, n_hidden=16, device="cpu")
>>> history = model.train(max_steps=2, batch_size=32, progress=False)
>>> model.perturbation_embeddings().shape
(4, 4)
"""

from __future__ import annotations

import pandas as pd

from anndata import AnnData

from samsvae_pyro._typing import GuideFactory, Likelihood, SAMSGuideName
from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.defaults import N_HIDDEN, N_LATENT
from samsvae_pyro.models import CPAVAEModel


class CPAVAE(PerturbationModel):
    """CPA-VAE: z = z_basal + D E, x ~ p(x | MLP(z), l); every perturbation shifts every latent dimension.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        K.
    guide
        ``"mean_field"`` (paper: q(E) mean-field Normal), ``"correlated"``, a guide module, or a factory.
    likelihood
        ``"nb"`` (paper), ``"poisson"`` or ``"normal"`` (non-count data).
    n_hidden, n_layers, activation
        Decoder MLP; registered guides use the same sizes for their encoder unless ``guide_kwargs`` say otherwise.
    **kwargs
        ``embedding_prior_scale``, ``guide_kwargs``, ``device``, ``seed``.
    """

    def __init__(self, adata: AnnData, *, n_latent: int = N_LATENT,
                 guide: SAMSGuideName | GuideFactory = "mean_field", likelihood: Likelihood = "nb",
                 n_hidden: int = N_HIDDEN, n_layers: int = 1, activation: str = "leaky_relu", **kwargs):
        super().__init__(adata, guide=guide, n_latent=n_latent, likelihood=likelihood, n_hidden=n_hidden,
                         n_layers=n_layers, activation=activation, **kwargs)

    def _build_model(self, **model_kwargs) -> CPAVAEModel:
        return CPAVAEModel(self.data.n_genes, self.data.n_perturbations, **model_kwargs)

    def mask_probabilities(self, n_samples: int = 100) -> pd.DataFrame:
        """Not defined: CPA-VAE has no mask. Raises ValueError."""
        raise ValueError("CPAVAE has no mask: CPA-VAE fixes m = 1, so every perturbation shifts every latent "
                         "dimension. Use perturbation_embeddings() for its effects, or SAMSVAE for a sparse mask.")

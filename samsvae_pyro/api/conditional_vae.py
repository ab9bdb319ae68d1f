"""ConditionalVAE: the user-facing conditional VAE baseline (docs/model.md, section 4).

Example
-------
>>> from samsvae_pyro import ConditionalVAE, simulate_counts
>>> adata = simulate_counts(n_perturbations=4, cells_per_perturbation=20, n_genes=10, seed=0)
>>> ConditionalVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> model = ConditionalVAE(adata, n_latent=4, n_hidden=16, device="cpu")
>>> history = model.train(max_steps=2, batch_size=32, progress=False)
>>> model.get_latent_representation().shape
(100, 4)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anndata import AnnData

from samsvae_pyro._typing import GuideFactory, GuideName, LatentKind, Likelihood
from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.defaults import N_HIDDEN, N_LATENT
from samsvae_pyro.models import ConditionalVAEModel

NO_GLOBALS = ("ConditionalVAE has no {what}: it has no global latents, the dosages d_i enter the decoder "
              "directly. Use model_ate() or predict() for its perturbation effects, or SAMSVAE for a sparse mask.")


class ConditionalVAE(PerturbationModel):
    """Conditional VAE: z ~ N(0, I), x ~ p(x | MLP([z, d]), l); encoder q(z | x~, d).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        K.
    guide
        ``"conditional"`` (q(z | x~, d)), a guide module, or a factory.
    likelihood
        ``"nb"`` (paper), ``"poisson"`` or ``"normal"`` (non-count data).
    n_hidden, n_layers, activation
        Decoder MLP; the registered guide uses the same sizes for its encoder unless ``guide_kwargs`` say otherwise.
    **kwargs
        ``guide_kwargs``, ``device``, ``seed``.
    """

    def __init__(self, adata: AnnData, *, n_latent: int = N_LATENT, guide: GuideName | GuideFactory = "conditional",
                 likelihood: Likelihood = "nb", n_hidden: int = N_HIDDEN, n_layers: int = 1,
                 activation: str = "leaky_relu", **kwargs):
        super().__init__(adata, guide=guide, n_latent=n_latent, likelihood=likelihood, n_hidden=n_hidden,
                         n_layers=n_layers, activation=activation, **kwargs)

    def _build_model(self, **model_kwargs) -> ConditionalVAEModel:
        return ConditionalVAEModel(self.data.n_genes, self.data.n_perturbations, **model_kwargs)

    def mask_probabilities(self, n_samples: int = 100) -> pd.DataFrame:
        """Not defined: the conditional VAE has no mask. Raises ValueError."""
        raise ValueError(NO_GLOBALS.format(what="mask"))

    def perturbation_embeddings(self, n_samples: int = 100) -> pd.DataFrame:
        """Not defined: the conditional VAE has no perturbation embeddings. Raises ValueError."""
        raise ValueError(NO_GLOBALS.format(what="perturbation embeddings"))

    def get_latent_representation(self, adata=None, *, kind: LatentKind = "basal", **kwargs) -> np.ndarray:
        """Posterior mean z per cell, (N, K); ``kind="perturbed"`` does not apply (d enters the decoder)."""
        if kind == "perturbed":
            raise ValueError(NO_GLOBALS.format(what="perturbed latent state") + " Use kind='basal'.")
        return super().get_latent_representation(adata, kind=kind, **kwargs)

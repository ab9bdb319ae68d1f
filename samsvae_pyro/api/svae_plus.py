"""SVAEPlus: the user-facing SVAE+ baseline (docs/model.md, section 4; Lopez et al. 2022).

Example
-------
>>> from samsvae_pyro import SVAEPlus, simulate_counts
>>> adata = simulate_counts(n_perturbations=4, cells_per_perturbation=20, n_genes=10, seed=0)
>>> SVAEPlus.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> model = SVAEPlus(adata, n_latent=4, n_hidden=16, device="cpu")
>>> history = model.train(max_steps=2, batch_size=32, progress=False)
>>> model.mask_probabilities().shape
(4, 4)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anndata import AnnData

from samsvae_pyro._typing import GuideFactory, GuideName, Likelihood
from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.defaults import N_HIDDEN, N_LATENT
from samsvae_pyro.models import SVAEPlusModel


class SVAEPlus(PerturbationModel):
    """SVAE+: z = z_basal + m_t * mu_t for a cell with perturbation t, pi ~ Beta(1, beta), m ~ Bernoulli(pi).

    Requires at most one perturbation per cell; register combinations with ``encoding="unique"``
    (each observed combination its own perturbation; with ``vocabulary="all"`` a combination without
    training cells is predicted from the prior only, the paper's setting).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        K.
    guide
        ``"svae_plus"`` (q(pi) point mass, q(M) straight-through, q(z | x~)), a guide module, or a factory.
    beta
        Sparsity of the Beta(1, beta) prior (paper sweep: 2, 5, 10; the default 5 is the middle one).
    likelihood
        ``"nb"`` (paper), ``"poisson"`` or ``"normal"`` (non-count data).
    n_hidden, n_layers, activation
        Decoder MLP; the registered guide uses the same sizes for its encoder unless ``guide_kwargs`` say otherwise.
    **kwargs
        ``guide_kwargs`` (e.g. ``mask_temperature``), ``device``, ``seed``.
    """

    def __init__(self, adata: AnnData, *, n_latent: int = N_LATENT, guide: GuideName | GuideFactory = "svae_plus",
                 beta: float = 5.0, likelihood: Likelihood = "nb",
                 n_hidden: int = N_HIDDEN, n_layers: int = 1, activation: str = "leaky_relu", **kwargs):
        super().__init__(adata, guide=guide, n_latent=n_latent, beta=beta, likelihood=likelihood, n_hidden=n_hidden,
                         n_layers=n_layers, activation=activation, **kwargs)

    def _build_model(self, **model_kwargs) -> SVAEPlusModel:
        _check_single_perturbations(self.data)
        return SVAEPlusModel(self.data.n_genes, self.data.n_perturbations, **model_kwargs)

    def perturbation_embeddings(self, n_samples: int = 100) -> pd.DataFrame:
        """The learned shifts mu_t, (T, K), indexed by perturbation name (point estimates: ``n_samples`` is unused)."""
        return self._frame(self.model.shift.detach())


def _check_single_perturbations(data) -> None:
    """Raise a ValueError when a (non-excluded) cell has more than one perturbation."""
    several = (np.diff(data.dosages.indptr) > 1) & (np.asarray(data.split) != "excluded")
    if several.any():
        example = data.labels[np.flatnonzero(several)[0]]
        raise ValueError(
            f"SVAE+ allows at most one perturbation per cell, but {int(several.sum())} cells have more "
            f"(e.g. {example!r}). Drop those cells (keep only control and single-perturbation cells), or call "
            "setup_anndata(..., encoding='unique') so that each combination is a perturbation of its own."
        )

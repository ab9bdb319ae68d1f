"""Guide of the conditional VAE: prod_i q(z_i | x~_i, d_i) (docs/model.md, section 4)."""

from __future__ import annotations

from pyro.nn import PyroModule
from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.guides.components import BasalEncoder


class ConditionalGuide(PyroModule):
    """prod_i q(z_i | x~_i, d_i) = Normal(mu([x~_i, d_i]), sigma([x~_i, d_i])); no global sites.

    Parameters
    ----------
    model
        A :class:`~samsvae_pyro.models.ConditionalVAEModel`; K and T are read from it.
    x_mean, x_std, input_transform, n_hidden, n_layers, activation
        See :class:`~samsvae_pyro.guides.BasalEncoder`.
    """

    def __init__(self, model, *, x_mean: Tensor, x_std: Tensor, input_transform: str = "log1p",
                 n_hidden: int = 400, n_layers: int = 1, activation: str = "leaky_relu"):
        super().__init__()
        self.encoder = BasalEncoder(
            model.n_latent, x_mean=x_mean, x_std=x_std, input_transform=input_transform,
            condition_dim=model.n_perturbations, n_hidden=n_hidden, n_layers=n_layers, activation=activation,
        )

    def forward(self, batch: Batch) -> Tensor:
        """Sample z_basal for ``batch``; returns (..., B, K)."""
        return self.encoder(batch, batch["D"])

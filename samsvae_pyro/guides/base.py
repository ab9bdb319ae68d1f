"""The structure every SAMS-VAE guide shares: globals in the perturbations plate, then the encoder."""

from __future__ import annotations

import pyro
from pyro import distributions as dist
from pyro.nn import PyroModule
from torch import Tensor, nn

from samsvae_pyro._typing import Batch
from samsvae_pyro.guides.components import BasalEncoder, MaskPosterior
from samsvae_pyro.models.plates import E, latent_offset, perturbations_plate


class SAMSGuide(PyroModule):
    """q(M) q(E | .) prod_i q(z_basal_i | x_i, d_i (E * M)); subclasses define q(E | .).

    Parameters
    ----------
    model
        The generative model; sizes, mask prior and site layout are read from it (no reference kept).
    x_mean, x_std, input_transform
        Training statistics for the encoder input (see :class:`BasalEncoder`).
    use_offset
        Encoder input includes the latent offset (default) or only x ("mean_field_encoder").
    subtract_offset
        Parametrise the encoder mean as f(x~, .) - d (E * M) (default): the network predicts the cell's
        whole latent state and the offset of the same particle is subtracted. ``False`` is the paper's
        parametrisation, f(x~, .) alone, with which q(z_basal) of perturbed cells absorbs part of the
        effects (measured: E attenuated by about a third, model ATEs shrunk towards zero, 90% intervals
        covering 67% of true effects instead of 76%; see the README's inference notes).
    n_hidden, n_layers, activation
        Basal encoder MLP (paper: as the decoder).
    mask_temperature, mask_gradient, mask_init_logit
        See :class:`MaskPosterior`.
    """

    def __init__(
        self, model, *, x_mean: Tensor, x_std: Tensor, input_transform: str = "log1p", use_offset: bool = True,
        n_hidden: int = 400, n_layers: int = 1, activation: str = "leaky_relu", mask_temperature: float = 1.0,
        mask_gradient: str = "straight_through", mask_init_logit: float = 0.0, subtract_offset: bool = True,
    ):
        super().__init__()
        self.n_perturbations, self.n_latent = model.n_perturbations, model.n_latent
        self.subtract_offset = subtract_offset
        self.mask = MaskPosterior(
            model.n_perturbations, model.n_latent, mask_prior=model.mask_prior, temperature=mask_temperature,
            gradient=mask_gradient, init_logit=mask_init_logit,
        )
        self.encoder = BasalEncoder(
            model.n_latent, x_mean=x_mean, x_std=x_std, input_transform=input_transform, use_offset=use_offset,
            n_hidden=n_hidden, n_layers=n_layers, activation=activation,
        )

    def global_parameters(self) -> list[nn.Parameter]:
        """Parameters of q(M) and q(E | .) (everything but the basal encoder), for ``train(lr_globals=...)``."""
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    def embedding_posterior(self, mask: Tensor | None) -> dist.TorchDistribution:
        """q(E | M) with batch shape (..., T) and event shape (K,)."""
        raise NotImplementedError

    def sample_globals(self, batch: Batch) -> tuple[Tensor | None, Tensor]:
        """Sample M then E | M in the perturbations plate. Returns M and E, each (..., T, K)."""
        with perturbations_plate(self.n_perturbations):
            mask = self.mask()
            return mask, pyro.sample(E, self.embedding_posterior(mask))

    def forward(self, batch: Batch) -> Tensor:
        """Sample every latent site of the model for ``batch``; returns z_basal, (..., B, K)."""
        mask, embedding = self.sample_globals(batch)  # (S, T, K) each
        offset = latent_offset(batch["D"], embedding, mask)  # (S, B, K)
        return self.encoder(batch, offset, shift=offset if self.subtract_offset else None)

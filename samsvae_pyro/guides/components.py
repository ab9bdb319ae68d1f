"""Guide pieces every SAMS-VAE guide shares: the mask posterior and the basal encoder (docs/model.md, section 2)."""

from __future__ import annotations

from typing import Literal

import pyro
import torch
from pyro import distributions as dist
from torch import Tensor, nn

from samsvae_pyro._typing import Batch
from samsvae_pyro.distributions import StraightThroughBernoulli
from samsvae_pyro.models.plates import MASK, MASK_PROB, Z_BASAL, cells_plate
from samsvae_pyro.nn import MLP, gaussian_params

MaskGradient = Literal["straight_through", "score"]


class MaskPosterior(nn.Module):
    """q(mask_prob) q(M): M_tk ~ Bernoulli(sigmoid(lambda_tk)), mask_prob a point mass (Beta-Bernoulli only).

    Parameters
    ----------
    n_perturbations, n_latent
        T, K.
    mask_prior
        The model's ``mask_prior``: decides which sites exist (none for ``None``).
    temperature
        Temperature of the straight-through relaxation (paper: 1).
    gradient
        ``"straight_through"`` (pathwise, any estimator) or ``"score"`` (a plain Bernoulli whose gradient
        comes from the score function; use ``estimator="tracegraph"``, which adds a decaying-average baseline).
    init_logit
        Initial lambda (paper: 0).
    """

    def __init__(
        self, n_perturbations: int, n_latent: int, *, mask_prior: str | None, temperature: float = 1.0,
        gradient: MaskGradient = "straight_through", init_logit: float = 0.0,
    ):
        super().__init__()
        if gradient not in ("straight_through", "score"):
            raise ValueError(f"mask_gradient={gradient!r} is not supported; choose 'straight_through' or 'score'.")
        self.mask_prior, self.temperature, self.gradient = mask_prior, temperature, gradient
        if mask_prior is not None:  # no parameters when M is fixed to one
            self.logits = nn.Parameter(torch.full((n_perturbations, n_latent), float(init_logit)))
        if mask_prior == "beta_bernoulli":
            self.prob_logits = nn.Parameter(torch.zeros(n_perturbations, n_latent))

    def mask_distribution(self) -> dist.TorchDistribution:
        if self.gradient == "score":
            return dist.Bernoulli(logits=self.logits).to_event(1)
        return StraightThroughBernoulli(self.logits, self.temperature).to_event(1)

    def forward(self) -> Tensor | None:
        """Sample the mask sites inside the caller's perturbations plate. Returns M, (..., T, K)."""
        if self.mask_prior is None:
            return None
        if self.mask_prior == "beta_bernoulli":
            pyro.sample(MASK_PROB, dist.Delta(torch.sigmoid(self.prob_logits)).to_event(1))
        baseline = {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}}
        return pyro.sample(MASK, self.mask_distribution(), infer=baseline if self.gradient == "score" else {})


class BasalEncoder(nn.Module):
    """q(z_basal_i | x~_i, c_i) = Normal(mu(u_i) - s_i, sigma(u_i)), sigma^2 = exp(logvar) + 1e-4, u_i = [x~_i, c_i].

    x~ = (t(x) - mean_train) / sd_train per gene, with t = log1p for counts and the identity otherwise.
    The expression block of the first layer is computed once per cell and shared by all particles.

    Parameters
    ----------
    x_mean, x_std
        (G,) training-split statistics of t(x).
    input_transform
        ``"log1p"`` or ``"identity"``.
    use_offset
        Feed a conditioning block c_i (default: the latent offset d_i (E * M) of the same particle) or
        only x~ ("mean_field_encoder").
    condition_dim
        Width of c_i: K for the latent offset (default), T for the dosages d_i (conditional VAE).
    """

    def __init__(
        self, n_latent: int, *, x_mean: Tensor, x_std: Tensor, input_transform: str = "log1p",
        use_offset: bool = True, condition_dim: int | None = None, n_hidden: int = 400, n_layers: int = 1,
        activation: str = "leaky_relu",
    ):
        super().__init__()
        self.input_transform, self.use_offset = input_transform, use_offset
        self.register_buffer("x_mean", torch.as_tensor(x_mean, dtype=torch.float32))
        self.register_buffer("x_std", torch.as_tensor(x_std, dtype=torch.float32))
        in_dims = (len(self.x_mean), condition_dim or n_latent) if use_offset else (len(self.x_mean),)
        self.net = MLP(in_dims, 2 * n_latent, n_hidden=n_hidden, n_layers=n_layers, activation=activation)

    def normalise(self, x: Tensor) -> Tensor:
        """x~ from raw x. Shapes: (B, G) -> (B, G)."""
        u = torch.log1p(x) if self.input_transform == "log1p" else x
        return (u - self.x_mean) / self.x_std

    def forward(self, batch: Batch, offset: Tensor | None, *, shift: Tensor | None = None) -> Tensor:
        """Sample z_basal in the cells plate, its mean moved by ``-shift`` when given (SVAE+).

        Shapes: offset (the block c_i) (..., B, K or T); shift (..., B, K); returns (..., B, K).
        """
        out = self.net(self.normalise(batch["x"]), offset if self.use_offset else None)
        loc, scale = gaussian_params(out)
        if shift is not None:
            loc = loc - shift
        with cells_plate(batch):
            return pyro.sample(Z_BASAL, dist.Normal(loc, scale).to_event(1))

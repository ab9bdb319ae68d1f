"""SAMS-VAE generative model (docs/model.md, section 1).

Deviations from the authors' code: none in the model. The "poisson" likelihood is library-scaled
(see :mod:`samsvae_pyro.nn.likelihoods`).
"""

from __future__ import annotations

import pyro
import torch
from pyro import distributions as dist
from pyro.nn import PyroModule
from torch import Tensor, nn

from samsvae_pyro._typing import Batch, Likelihood, MaskPrior
from samsvae_pyro.models.plates import (
    E, MASK, MASK_PROB, X, Z_BASAL, cells_plate, latent_offset, perturbations_plate,
)
from samsvae_pyro.nn import MLP, LikelihoodHead

MASK_PRIORS = ("bernoulli", "beta_bernoulli", None)


class SAMSVAEModel(PyroModule):
    r"""p(E) p(M) prod_i p(z_basal_i) p(x_i | z_basal_i + d_i (E * M), l_i).

    .. math::
        e_{tk} \sim N(0, \sigma_e^2), \quad m_{tk} \sim \mathrm{Bernoulli}(\alpha)
        \ (\text{or } \alpha_{tk} \sim \mathrm{Beta}(a, b)), \\
        z_i = z^{basal}_i + \textstyle\sum_t d_{it}\, e_t \odot m_t, \quad z^{basal}_i \sim N(0, I_K),
        \quad x_i \sim p(x \mid \mathrm{MLP}(z_i), l_i).

    ``mask_prior=None`` fixes M = 1 (CPA-VAE).

    ============  ===================  ===========  =========================================
    site          plate (dim)          event shape  distribution
    ============  ===================  ===========  =========================================
    mask_prob     perturbations (-1)   (K,)         Beta(a, b) (beta_bernoulli only)
    mask          perturbations (-1)   (K,)         Bernoulli(alpha or mask_prob)
    E             perturbations (-1)   (K,)         Normal(0, sigma_e)
    z_basal       cells (-1)           (K,)         Normal(0, 1)
    x             cells (-1)           (G,)         nb / poisson / normal given z and library
    ============  ===================  ===========  =========================================

    Parameters
    ----------
    n_genes, n_perturbations, n_latent
        G, T, K.
    likelihood
        ``"nb"`` (paper), ``"poisson"`` or ``"normal"``.
    mask_prior
        ``"bernoulli"`` (paper), ``"beta_bernoulli"``, or ``None`` for an all-ones mask.
    mask_prior_prob
        alpha, the prior inclusion probability (paper default 0.01); for ``"beta_bernoulli"`` the
        prior mean a / (a + b) with a = 1.
    learn_mask_prior
        Learn alpha by maximising the ELBO (empirical Bayes) instead of fixing it; ``mask_prior_prob`` is
        then its initial value.
    embedding_prior_scale
        sigma_e.
    learn_embedding_prior_scale
        Learn sigma_e by maximising the ELBO (empirical Bayes) instead of fixing it; ``embedding_prior_scale``
        is then its initial value.
    n_hidden, n_layers, activation
        Decoder MLP (paper: 400, 1, LeakyReLU).
    """

    def __init__(
        self, n_genes: int, n_perturbations: int, n_latent: int, *, likelihood: Likelihood = "nb",
        mask_prior: MaskPrior | None = "bernoulli", mask_prior_prob: float = 0.01, learn_mask_prior: bool = False,
        embedding_prior_scale: float = 1.0, learn_embedding_prior_scale: bool = False, n_hidden: int = 400, n_layers: int = 1,
        activation: str = "leaky_relu",
    ):
        super().__init__()
        if n_latent < 1:
            raise ValueError(f"n_latent must be a positive integer, got {n_latent}.")
        if mask_prior not in MASK_PRIORS:
            raise ValueError(f"mask_prior={mask_prior!r} is not supported; choose one of {MASK_PRIORS}.")
        if not 0 < mask_prior_prob < 1:
            raise ValueError(f"mask_prior_prob must lie in (0, 1), got {mask_prior_prob}.")
        self.n_genes, self.n_perturbations, self.n_latent = n_genes, n_perturbations, n_latent
        self.mask_prior = mask_prior
        logit = torch.logit(torch.tensor(float(mask_prior_prob)))
        if learn_mask_prior:
            self.mask_prior_logit = nn.Parameter(logit)
        else:
            self.register_buffer("mask_prior_logit", logit, persistent=False)  # rebuilt from the config
        if not embedding_prior_scale > 0:
            raise ValueError(f"embedding_prior_scale must be positive, got {embedding_prior_scale}.")
        log_scale = torch.tensor(float(embedding_prior_scale)).log()
        if learn_embedding_prior_scale:
            self.embedding_prior_log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("embedding_prior_log_scale", log_scale, persistent=False)  # rebuilt from the config
        self.head = LikelihoodHead(likelihood, n_genes)
        self.decoder = MLP((n_latent,), self.head.n_outputs, n_hidden=n_hidden, n_layers=n_layers,
                           activation=activation)
        self.register_buffer("_zeros", torch.zeros(n_latent))

    @property
    def likelihood(self) -> str:
        return self.head.likelihood

    @property
    def embedding_prior_scale(self) -> Tensor:
        """sigma_e (a learned parameter with ``learn_embedding_prior_scale``)."""
        return self.embedding_prior_log_scale.exp()

    def embedding_prior(self) -> dist.TorchDistribution:
        return dist.Normal(self._zeros, self.embedding_prior_scale).to_event(1)

    @property
    def mask_prior_prob(self) -> Tensor:
        """alpha (a learned parameter with ``learn_mask_prior``)."""
        return torch.sigmoid(self.mask_prior_logit)

    def mask_prob_prior(self) -> dist.TorchDistribution:
        b = torch.exp(-self.mask_prior_logit)  # (1 - alpha) / alpha
        return dist.Beta(self._zeros + 1.0, self._zeros + b).to_event(1)

    def basal_prior(self) -> dist.TorchDistribution:
        return dist.Normal(self._zeros, 1.0).to_event(1)

    def observation(self, z: Tensor, library: Tensor) -> dist.TorchDistribution:
        """p(x | z, l). Shapes: z (..., B, K), library (B,)."""
        return self.head(self.decoder(z), library)

    def sample_mask(self) -> Tensor | None:
        """Sample M (and mask_prob) inside the perturbations plate; ``None`` when M is fixed to 1."""
        if self.mask_prior is None:
            return None
        prob = self._zeros + self.mask_prior_prob
        if self.mask_prior == "beta_bernoulli":
            prob = pyro.sample(MASK_PROB, self.mask_prob_prior())
        return pyro.sample(MASK, dist.Bernoulli(probs=prob).to_event(1))

    def sample_embedding(self) -> Tensor:
        """Sample E inside the perturbations plate. Returns (..., T, K)."""
        return pyro.sample(E, self.embedding_prior())

    def forward(self, batch: Batch) -> Tensor:
        """Run the generative program on a batch (x observed, or sampled when ``batch["x"] is None``).

        Returns z, (..., B, K).
        """
        with perturbations_plate(self.n_perturbations):
            mask = self.sample_mask()  # (S, T, K)
            embedding = self.sample_embedding()  # (S, T, K)
        with cells_plate(batch):
            z_basal = pyro.sample(Z_BASAL, self.basal_prior())  # (S, B, K)
            z = z_basal + latent_offset(batch["D"], embedding, mask)
            pyro.sample(X, self.observation(z, batch["library"]), obs=batch["x"])
        return z

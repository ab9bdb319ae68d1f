"""Observation models p(x | decoder output, library): "nb", "poisson", "normal" (docs/model.md, section 1).

Each head knows how many decoder outputs it needs per gene and turns them into a Pyro distribution
with event shape (G,). Deviation from the paper: "poisson" uses the library-scaled softmax mean of
"nb" (the theta -> infinity limit) instead of a free softplus rate, so that predictions at a fixed
library size (ATE at l = 1e4) mean the same thing for every count likelihood.
"""

from __future__ import annotations

from typing import get_args

import torch
from pyro import distributions as dist
from torch import Tensor, nn

from samsvae_pyro._typing import Likelihood
from samsvae_pyro.distributions import LibraryNegativeBinomial
from samsvae_pyro.nn.mlp import gaussian_params

LIKELIHOODS = get_args(Likelihood)


def is_count(likelihood: Likelihood) -> bool:
    """Whether a likelihood models counts (so the data are counts: library sizes, log1p encoder input)."""
    return likelihood != "normal"


class LikelihoodHead(nn.Module):
    """Map decoder outputs to p(x | z, l).

    Parameters
    ----------
    likelihood
        ``"nb"`` (gene-wise learned inverse dispersion, phi initialised at 0), ``"poisson"`` or ``"normal"``.
    n_genes
        G.

    Shapes
    ------
    out : (..., B, n_outputs); library : (B,); the distribution has batch shape (..., B), event (G,).
    """

    def __init__(self, likelihood: str, n_genes: int):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood={likelihood!r} is not supported; choose one of {list(LIKELIHOODS)}.")
        self.likelihood = likelihood
        self.n_genes = n_genes
        self.log_theta = nn.Parameter(torch.zeros(n_genes)) if likelihood == "nb" else None

    @property
    def n_outputs(self) -> int:
        return 2 * self.n_genes if self.likelihood == "normal" else self.n_genes

    @property
    def is_count(self) -> bool:
        return is_count(self.likelihood)

    def forward(self, out: Tensor, library: Tensor) -> dist.TorchDistribution:
        if self.likelihood == "normal":
            loc, scale = gaussian_params(out)
            return dist.Normal(loc, scale).to_event(1)
        return LibraryNegativeBinomial(out, library, self.log_theta)

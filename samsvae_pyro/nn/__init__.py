"""Neural building blocks shared by every model family and guide."""

from samsvae_pyro.nn.likelihoods import LIKELIHOODS, LikelihoodHead
from samsvae_pyro.nn.mlp import MLP, gaussian_params

__all__ = ["LIKELIHOODS", "LikelihoodHead", "MLP", "gaussian_params"]

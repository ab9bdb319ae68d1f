"""Distributions the models and guides need beyond Pyro's own."""

from samsvae_pyro.distributions.negative_binomial import LibraryNegativeBinomial
from samsvae_pyro.distributions.straight_through import StraightThroughBernoulli

__all__ = ["LibraryNegativeBinomial", "StraightThroughBernoulli"]

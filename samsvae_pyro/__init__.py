"""SAMS-VAE (Sparse Additive Mechanism Shift VAE) for single-cell perturbation screens, in Pyro."""

from samsvae_pyro.api import CPAVAE, SAMSVAE, ConditionalVAE, SVAEPlus
from samsvae_pyro.data import build_perturbation_data, simulate_counts, simulate_paper

__all__ = ["CPAVAE", "ConditionalVAE", "SAMSVAE", "SVAEPlus", "build_perturbation_data", "simulate_counts",
           "simulate_paper"]
__version__ = "0.1.0"

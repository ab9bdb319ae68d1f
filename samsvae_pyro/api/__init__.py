"""User-facing model classes (scvi-tools style)."""

from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.api.sams_vae import SAMSVAE

__all__ = ["PerturbationModel", "SAMSVAE"]

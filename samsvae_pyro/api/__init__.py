"""User-facing model classes (scvi-tools style)."""

from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.api.conditional_vae import ConditionalVAE
from samsvae_pyro.api.cpa_vae import CPAVAE
from samsvae_pyro.api.sams_vae import SAMSVAE
from samsvae_pyro.api.svae_plus import SVAEPlus

__all__ = ["CPAVAE", "ConditionalVAE", "PerturbationModel", "SAMSVAE", "SVAEPlus"]

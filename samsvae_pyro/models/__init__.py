"""Generative programs (Pyro models), one file per family."""

from samsvae_pyro.models import plates
from samsvae_pyro.models.conditional_vae import ConditionalVAEModel
from samsvae_pyro.models.cpa_vae import CPAVAEModel
from samsvae_pyro.models.sams_vae import SAMSVAEModel
from samsvae_pyro.models.svae_plus import SVAEPlusModel

__all__ = ["CPAVAEModel", "ConditionalVAEModel", "SAMSVAEModel", "SVAEPlusModel", "plates"]

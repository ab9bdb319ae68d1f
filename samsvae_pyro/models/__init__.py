"""Generative programs (Pyro models), one file per family."""

from samsvae_pyro.models import plates
from samsvae_pyro.models.sams_vae import SAMSVAEModel

__all__ = ["SAMSVAEModel", "plates"]

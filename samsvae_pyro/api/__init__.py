"""User-facing model classes (scvi-tools style) and the registry of families.

``FAMILIES`` maps the class name recorded in a saved model's ``config.json`` to its class; a run on
disk is resolved through it (:func:`samsvae_pyro.runs.load_run`), never by looking names up.
"""

from samsvae_pyro.api.base import PerturbationModel
from samsvae_pyro.api.conditional_vae import ConditionalVAE
from samsvae_pyro.api.cpa_vae import CPAVAE
from samsvae_pyro.api.persistence import SavedModelError
from samsvae_pyro.api.sams_vae import SAMSVAE
from samsvae_pyro.api.svae_plus import SVAEPlus

FAMILIES: dict[str, type[PerturbationModel]] = {
    cls.__name__: cls for cls in (SAMSVAE, CPAVAE, SVAEPlus, ConditionalVAE)
}

__all__ = ["CPAVAE", "FAMILIES", "ConditionalVAE", "PerturbationModel", "SAMSVAE", "SVAEPlus", "SavedModelError"]

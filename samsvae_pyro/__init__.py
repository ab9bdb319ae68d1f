"""SAMS-VAE (Sparse Additive Mechanism Shift VAE) for single-cell perturbation screens, in Pyro.

The public names are imported on first use, so ``import samsvae_pyro`` (and ``samsvae --help``) stays
fast; ``from samsvae_pyro import SAMSVAE`` loads torch, Pyro and anndata.
"""

from typing import TYPE_CHECKING

from samsvae_pyro._lazy import lazy_exports

__all__ = ["CPAVAE", "ConditionalVAE", "SAMSVAE", "SVAEPlus", "build_perturbation_data", "simulate_counts",
           "simulate_paper"]
__version__ = "0.1.0"
__getattr__, __dir__ = lazy_exports(__name__, {
    **dict.fromkeys(["CPAVAE", "ConditionalVAE", "SAMSVAE", "SVAEPlus"], "samsvae_pyro.api"),
    **dict.fromkeys(["build_perturbation_data", "simulate_counts", "simulate_paper"], "samsvae_pyro.data"),
})

if TYPE_CHECKING:
    from samsvae_pyro.api import CPAVAE, SAMSVAE, ConditionalVAE, SVAEPlus
    from samsvae_pyro.data import build_perturbation_data, simulate_counts, simulate_paper

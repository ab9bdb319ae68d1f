"""Guides (variational families) for SAMS-VAE and its comparison models, and the guide contract.

The guide contract
------------------
A guide is a callable ``guide(batch)`` that takes the same :class:`~samsvae_pyro._typing.Batch` as
the model and samples exactly the model's latent sites (``E``, ``mask``, ``z_basal``, plus
``mask_prob`` for the Beta-Bernoulli prior; CPA-VAE has no ``mask``, SVAE+ no ``E``, the conditional
VAE only ``z_basal``; names in :mod:`samsvae_pyro.models.plates`), using the
same plates: globals in ``perturbations_plate(T)``, locals in ``cells_plate(batch)`` (which carries
the subsampling). Everything a guide learns must be a parameter of a ``torch.nn.Module`` (a
``PyroModule`` or an autoguide), so that the trainer can optimise it.

``SAMSVAE(adata, guide=...)`` (and every family's class) accepts a registered name (``"correlated"``,
``"mean_field"`` for SAMS-VAE and CPA-VAE; ``"svae_plus"``; ``"conditional"``), a guide instance, or a
factory ``factory(model, *, x_mean, x_std, input_transform) -> guide``.
The guide is traced once against the model at construction; missing or extra sites are an error.
"""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from samsvae_pyro._typing import Batch
from samsvae_pyro.guides.base import SAMSGuide
from samsvae_pyro.guides.components import BasalEncoder, MaskPosterior
from samsvae_pyro.guides.compose import ComposedGuide
from samsvae_pyro.guides.conditional import ConditionalGuide
from samsvae_pyro.guides.correlated import CorrelatedGuide
from samsvae_pyro.guides.mean_field import MeanFieldGuide
from samsvae_pyro.guides.svae_plus import SVAEPlusGuide

GUIDES: dict[str, type[torch.nn.Module]] = {
    "conditional": ConditionalGuide, "correlated": CorrelatedGuide, "mean_field": MeanFieldGuide,
    "svae_plus": SVAEPlusGuide,
}


def make_guide(guide, model, *, x_mean, x_std, input_transform: str, **guide_kwargs) -> torch.nn.Module:
    """Build a guide from a registered name, an instance, or a factory (see the module docstring)."""
    stats = dict(x_mean=x_mean, x_std=x_std, input_transform=input_transform)
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise ValueError(f"guide={guide!r} is not registered; choose one of {sorted(GUIDES)}, "
                             "or pass a guide instance or a factory(model, **stats).")
        return GUIDES[guide](model, **stats, **guide_kwargs)
    if guide_kwargs:
        raise ValueError(f"guide options {sorted(guide_kwargs)} only apply to registered guide names.")
    if isinstance(guide, torch.nn.Module):
        return guide
    if callable(guide):
        return guide(model, **stats)
    raise ValueError(f"guide must be a name, a guide module or a factory, got {type(guide).__name__}.")


def latent_sites(fn: Callable, batch: Batch) -> set[str]:
    """Names of the non-observed sample sites ``fn(batch)`` draws."""
    trace = poutine.trace(fn).get_trace(batch)
    return {name for name, site in trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
            and not site["infer"].get("is_auxiliary")}


def check_guide(model: Callable, guide: Callable, batch: Batch) -> None:
    """Raise a ValueError listing the sites the guide misses or adds relative to the model."""
    with torch.no_grad():
        expected = latent_sites(model, batch)
        found = latent_sites(guide, batch)
    if expected != found:
        raise ValueError(
            f"The guide does not match the model: missing sites {sorted(expected - found)}, "
            f"extra sites {sorted(found - expected)}. A guide must sample exactly the model's latent sites."
        )


__all__ = [
    "GUIDES", "BasalEncoder", "ComposedGuide", "ConditionalGuide", "CorrelatedGuide", "MaskPosterior",
    "MeanFieldGuide", "SAMSGuide", "SVAEPlusGuide", "check_guide", "latent_sites", "make_guide",
]

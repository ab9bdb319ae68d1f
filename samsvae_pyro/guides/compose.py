"""A guide assembled from a Pyro autoguide for E and the hand-written mask posterior and encoder.

Example
-------
>>> from pyro.infer.autoguide import AutoNormal
>>> from samsvae_pyro.guides import ComposedGuide
>>> factory = lambda model, **stats: ComposedGuide(model, autoguide=AutoNormal, **stats)
>>> # SAMSVAE(adata, guide=factory)
"""

from __future__ import annotations

from typing import Callable

from pyro import poutine
from pyro.infer.autoguide import AutoGuide, AutoNormal
from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.guides.base import SAMSGuide
from samsvae_pyro.models.plates import E, PERTURBATIONS


class ComposedGuide(SAMSGuide):
    """q(M) q_auto(E) prod_i q(z_basal_i | x_i, d_i (E * M)), q_auto any autoguide on the model blocked to E.

    The autoguide sees ``poutine.block(model, expose=["E"])``: it is built from the model's own
    plates and site shapes, and never touches the cells plate.

    Parameters
    ----------
    autoguide
        An autoguide class (or callable model -> AutoGuide), e.g. ``AutoNormal`` or ``AutoLowRankMultivariateNormal``.
    **kwargs
        See :class:`SAMSGuide`.
    """

    def __init__(self, model, *, autoguide: Callable[..., AutoGuide] = AutoNormal, **kwargs):
        super().__init__(model, **kwargs)
        self.autoguide = autoguide(poutine.block(model, expose=[E]))

    def sample_globals(self, batch: Batch) -> tuple[Tensor | None, Tensor]:
        embedding = self.autoguide(batch)[E]
        with self.autoguide.plates[PERTURBATIONS]:  # re-enter the autoguide's plate: one plate per trace
            return self.mask(), embedding

"""Guide of SVAE+: q(pi) q(M) prod_i q(z_i | x~_i), with z_basal = z - d (M * mu) (docs/model.md, section 4)."""

from __future__ import annotations

from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.guides.base import SAMSGuide
from samsvae_pyro.models.plates import perturbations_plate


class SVAEPlusGuide(SAMSGuide):
    """q(pi) point mass, q(M) straight-through, q(z_basal_i) = N(mu(x~_i) - d_i (M * mu), sigma(x~_i)).

    The encoder sees x~ only, as the paper's q(z | x~); moving its mean by the shift of the same
    particle makes q(z_basal) the image of q(z | x~) under z_basal = z - d (M * mu). The shift mu
    is the model's parameter, shared with (tied to) this guide, as tied weights are in PyTorch.

    Parameters
    ----------
    model
        An :class:`~samsvae_pyro.models.SVAEPlusModel` (it owns ``shift``).
    **kwargs
        See :class:`SAMSGuide` (``use_offset`` is always False here).
    """

    def __init__(self, model, **kwargs):
        if not isinstance(getattr(model, "shift", None), Tensor):
            raise ValueError(f"The 'svae_plus' guide needs an SVAE+ model (one with a learned shift); got "
                             f"{type(model).__name__}. Use SVAEPlus, or another guide for this model.")
        if kwargs.pop("use_offset", False):
            raise ValueError("use_offset=True does not apply to the 'svae_plus' guide: its encoder sees x~ only.")
        super().__init__(model, use_offset=False, subtract_offset=True, **kwargs)
        self.shift = model.shift  # tied: one parameter, in the model and here

    def sample_globals(self, batch: Batch) -> tuple[Tensor | None, Tensor]:
        """Sample pi and M in the perturbations plate. Returns M (..., T, K) and the shift mu (T, K)."""
        with perturbations_plate(self.n_perturbations):
            return self.mask(), self.shift

"""The one place where site names, plate names, sizes and dims are decided.

Every model family, guide, estimator and evaluation imports these constants rather than retyping
strings. Layout (Pyro's tensor-shape conventions, batch dims on the left):

* ``"perturbations"`` at dim -1: global sites, batch shape (T,), event shape (K,).
* ``"cells"`` at dim -1, subsampled to the batch's cell indices: local sites, batch shape (B,).
* particles (Pyro's vectorised ELBO particles, or ``"particles"`` in evaluation) at dim -2.
"""

from __future__ import annotations

import pyro
from torch import Tensor

from samsvae_pyro._typing import Batch

# sample sites
E = "E"
MASK = "mask"
MASK_PROB = "mask_prob"
Z_BASAL = "z_basal"
X = "x"
GLOBAL_SITES = (E, MASK, MASK_PROB)

# plates
CELLS = "cells"
PERTURBATIONS = "perturbations"
PARTICLES = "particles"
MAX_PLATE_NESTING = 1  # the cells/perturbations plate; particles sit just left of it


def cells_plate(batch: Batch) -> pyro.plate:
    """Plate over the N cells of the modelled set, subsampled to the batch (local terms scaled N/B)."""
    return pyro.plate(CELLS, batch["n_cells"], subsample=batch["index"], dim=-1)


def perturbations_plate(n_perturbations: int) -> pyro.plate:
    """Plate over the T perturbations (global sites)."""
    return pyro.plate(PERTURBATIONS, n_perturbations, dim=-1)


def particles_plate(n_particles: int) -> pyro.plate:
    """Plate over S independent posterior/prior draws, left of every model plate."""
    return pyro.plate(PARTICLES, n_particles, dim=-MAX_PLATE_NESTING - 1)


def latent_offset(D: Tensor, E: Tensor, mask: Tensor | None) -> Tensor:
    """Sparse additive shift D (E * M) of each cell's latent state.

    Shapes
    ------
    D : (B, T); E, mask : (..., T, K) (``mask=None`` means all ones); returns (..., B, K).
    """
    effects = E if mask is None else E * mask
    return D @ effects

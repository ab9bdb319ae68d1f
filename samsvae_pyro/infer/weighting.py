"""Minibatch weighting of the ELBO terms, as Pyro handlers (docs/model.md, section 3).

Both are unbiased for the full-data ELBO:

* ``"plated"`` (default): the standard estimator. Local terms are scaled N/B by the subsampled cells
  plate; global terms (E, mask, mask_prob) count once per step.
* ``"per_perturbation"`` (the authors' code): every cell of the batch carries 1/N_t of perturbation
  t's global terms for each t it received (N_t cells with d_t != 0 in the modelled set); with the batch
  mean scaled by N this gives global weights (N/B) * #{i in batch: d_it != 0} / N_t. Perturbations
  absent from the batch get weight 0 for that step.

``per_cell`` divides the whole objective by N so that losses read as nats per cell.
"""

from __future__ import annotations

import contextlib
from typing import get_args

from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import Tensor

from samsvae_pyro._typing import Batch, Weighting
from samsvae_pyro.models.plates import PERTURBATIONS

WEIGHTINGS = get_args(Weighting)


class GlobalSiteScale(Messenger):
    """Multiply the scale of every site in the perturbations plate by a (T,) weight vector."""

    def __init__(self, weights: Tensor):
        super().__init__()
        self.weights = weights

    def _process_message(self, msg):
        if any(frame.name == PERTURBATIONS for frame in msg["cond_indep_stack"]):
            msg["scale"] = self.weights * msg["scale"]


def per_perturbation_weights(batch: Batch, cells_per_perturbation: Tensor) -> Tensor:
    """(N/B) * #{i in batch: d_it != 0} / N_t. Shapes: cells_per_perturbation (T,) -> (T,)."""
    in_batch = (batch["D"] != 0).sum(0).to(cells_per_perturbation.dtype)
    return batch["n_cells"] / len(batch["index"]) * in_batch / cells_per_perturbation.clamp_min(1)


def weighting_context(weighting: str, batch: Batch, cells_per_perturbation: Tensor | None):
    """Context manager applying ``weighting`` and the per-cell normalisation 1/N to everything inside."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is not supported; choose one of {list(WEIGHTINGS)}.")
    stack = contextlib.ExitStack()
    stack.enter_context(poutine.scale(scale=1.0 / batch["n_cells"]))
    if weighting == "per_perturbation":
        stack.enter_context(GlobalSiteScale(per_perturbation_weights(batch, cells_per_perturbation)))
    return stack

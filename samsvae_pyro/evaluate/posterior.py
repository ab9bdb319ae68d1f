"""Posterior summaries read from guide traces, so they work for any guide that meets the contract."""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd
import torch
from pyro import poutine
from torch import Tensor

from samsvae_pyro._typing import Batch
from samsvae_pyro.models.plates import particles_plate


@torch.no_grad()
def guide_trace(guide: Callable, batch: Batch, n_samples: int) -> poutine.Trace:
    """Trace ``guide(batch)`` with ``n_samples`` independent draws in the particles plate."""
    with particles_plate(n_samples):
        return poutine.trace(guide).get_trace(batch)


@torch.no_grad()
def replay_model(model: Callable, trace: poutine.Trace, batch: Batch, n_samples: int) -> poutine.Trace:
    """Trace of ``model(batch)`` with its latent sites replayed from a guide trace of ``n_samples`` draws.

    The model's return value (its latent state z) is the node ``"_RETURN"``.
    """
    with particles_plate(n_samples):
        return poutine.trace(poutine.replay(model, trace=trace)).get_trace(batch)


def site_mean(trace: poutine.Trace, site: str) -> Tensor:
    """Posterior mean of a site, averaging the guide distribution's mean over the traced particles.

    Shapes: the site's value is (S, ..., event); returns (..., event).
    """
    if site not in trace.nodes:
        raise ValueError(f"The guide has no site {site!r} (for example: no mask when the mask is fixed to one).")
    fn = trace.nodes[site]["fn"]
    mean = fn.mean.expand(trace.nodes[site]["value"].shape)
    return mean.mean(0).detach()


def latent_frame(values: Tensor, perturbations: Sequence[str]) -> pd.DataFrame:
    """A (T, K) table of per-perturbation latent values, indexed by perturbation, columns ``latent_k``."""
    columns = [f"latent_{k}" for k in range(values.shape[-1])]
    return pd.DataFrame(values.detach().cpu().numpy(), index=list(perturbations), columns=columns)

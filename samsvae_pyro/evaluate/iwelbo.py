"""Held-out importance-weighted ELBO (docs/model.md, section 5), computed from vectorised Pyro traces.

Predictive IWELBO (the paper's): S global draws (E, M) ~ q are made once and shared by every cell and
batch; draw s is paired with z_basal^(s) ~ q(z_basal | x_i, d_i, E^(s), M^(s)), and

    IWELBO_i = logmeanexp_s [ log p(x_i | z^(s), l_i) + log p(z_basal^(s)) - log q(z_basal^(s) | .) ].

Globals are not scored against their priors, so this measures how well the learned posterior over
mechanisms predicts new cells. ``kind="joint"`` instead returns the standard importance-weighted bound
on log p(X_eval) of the whole evaluated set, with the globals scored, divided by the number of cells:
logmeanexp_s [ sum_i w_is + log p(E^s, M^s) - log q(E^s, M^s) ] / N. It is a different quantity
(the KL of the globals is shared out over the evaluated cells) and is not comparable with the paper.
Pyro's ``RenyiELBO`` cannot return per-cell weights when global sites exist, hence this module.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, get_args

import pyro
import torch
from pyro import poutine
from torch import Tensor

from samsvae_pyro._typing import Batch, IwelboKind
from samsvae_pyro.evaluate.predictive import GlobalDraws, local_posterior, sample_globals
from samsvae_pyro.models.plates import CELLS, particles_plate

IWELBO_KINDS = get_args(IwelboKind)


def _in_cells_plate(site: dict) -> bool:
    return any(frame.name == CELLS for frame in site["cond_indep_stack"])


def _site_sum(trace: poutine.Trace, keep: Callable[[dict], bool], start: Tensor | float = 0.0) -> Tensor:
    """``start`` plus the unscaled log densities (no N/B subsampling factor) of the kept sites."""
    return sum((site["unscaled_log_prob"] for site in trace.nodes.values()
                if site["type"] == "sample" and keep(site) and "unscaled_log_prob" in site), start)


@torch.no_grad()
def log_weights(model: Callable, guide: Callable, batch: Batch, globals_: GlobalDraws) -> tuple[Tensor, Tensor]:
    """Per-cell log importance weights and the per-draw global log-ratio.

    Shapes
    ------
    globals_ : each (S, T, K); returns (S, B) local weights and (S,) log p(globals) - log q(globals)
    (zeros for a family without global sites).
    """
    guide_tr = local_posterior(guide, batch, globals_)
    with particles_plate(globals_.n_draws):
        model_tr = poutine.trace(poutine.replay(poutine.condition(model, data=globals_), trace=guide_tr)).get_trace(batch)
    model_tr.compute_log_prob()
    guide_tr.compute_log_prob()
    local = _site_sum(model_tr, _in_cells_plate) - _site_sum(guide_tr, lambda s: _in_cells_plate(s) and not s["is_observed"])
    is_global = lambda s: not _in_cells_plate(s) and s["name"] in globals_  # noqa: E731
    zeros = local.new_zeros(len(local), 1)  # (S, 1): the ratio when there are no global sites
    global_ratio = _site_sum(model_tr, is_global, zeros) - _site_sum(guide_tr, is_global)  # (S, T)
    return local, global_ratio.reshape(len(local), -1).sum(-1)


@torch.no_grad()
def iwelbo(model: Callable, guide: Callable, batches: Iterable[Batch], *, n_particles: int = 100,
           kind: IwelboKind = "predictive") -> Tensor | float:
    """Per-cell predictive IWELBO (nats, (N,) in batch order), or the joint bound per cell (a float).

    See the module docstring for the two definitions.
    """
    if kind not in IWELBO_KINDS:
        raise ValueError(f"kind={kind!r} is not supported; choose 'predictive' or 'joint'.")
    globals_, per_cell, totals, n_cells, ratio = None, [], 0.0, 0, None
    with pyro.validation_enabled(False):  # the data were validated when loaded; the checks cost ~10%
        for batch in batches:
            if globals_ is None:
                globals_ = sample_globals(guide, batch, n_particles)
            local, ratio = log_weights(model, guide, batch, globals_)
            per_cell.append(torch.logsumexp(local, 0) - math.log(n_particles))
            totals, n_cells = totals + local.sum(-1), n_cells + local.shape[-1]
    if globals_ is None:
        raise ValueError("No cells to evaluate: the split or AnnData is empty.")
    if kind == "predictive":
        return torch.cat(per_cell)
    return float((torch.logsumexp(totals + ratio, 0) - math.log(n_particles)) / n_cells)

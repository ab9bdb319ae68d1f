"""ELBO estimators by name, and the check that an estimator can train a given guide (docs/model.md, section 3).

==============  =====================  ==================================================================
name            Pyro class             gradients
==============  =====================  ==================================================================
``trace``       Trace_ELBO             pathwise (reparameterised sites, straight-through mask)
``mean_field``  TraceMeanField_ELBO    analytic KL where registered (incl. straight-through vs Bernoulli)
``tracegraph``  TraceGraph_ELBO        Rao-Blackwellised score function with baselines for plain sites
==============  =====================  ==================================================================
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import torch
from pyro import poutine
from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample

from samsvae_pyro._typing import Batch
from samsvae_pyro.models.plates import MAX_PLATE_NESTING

ESTIMATORS: dict[str, type[ELBO]] = {"trace": Trace_ELBO, "mean_field": TraceMeanField_ELBO,
                                     "tracegraph": TraceGraph_ELBO}


def make_elbo(estimator: str, *, n_particles: int = 5) -> ELBO:
    """The named ELBO with ``n_particles`` vectorised particles (each draws its own globals)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is not supported; choose one of {sorted(ESTIMATORS)}.")
    if n_particles < 1:
        raise ValueError(f"n_particles must be >= 1, got {n_particles}.")
    return ESTIMATORS[estimator](num_particles=n_particles, vectorize_particles=True,
                                 max_plate_nesting=MAX_PLATE_NESTING)


def _on_device(value):
    """Stand-in for Pyro's ``torch_item`` inside :func:`loss_on_device`: the value detached, in float64."""
    return value.detach().double() if torch.is_tensor(value) else value


@contextlib.contextmanager
def loss_on_device(elbo: ELBO) -> Iterator[None]:
    """Within this context ``elbo.loss_and_grads`` returns the loss as a 0-dim float64 tensor on the
    parameters' device instead of a Python float, so that no value is copied to the host.

    Pyro's estimators turn each sample site's log-density into a Python float (``torch_item``) and then
    check the sum for NaN: on CUDA every such copy waits for all queued kernels (seven per step with
    ``"trace"``). Here the estimator's modules use :func:`_on_device` instead: the same float32 values
    widened to float64 and added in the same order, so the loss is bit-identical to Pyro's float. The
    NaN warning is skipped; the trainer checks the loss and the gradient norm itself (one copy per step).
    The replacement is made in Pyro's module namespaces while the context is active (one training
    thread per process, as everywhere in this package).
    """
    replacements = {"torch_item": _on_device, "warn_if_nan": lambda value, *args, **kwargs: value}
    modules = {sys.modules[cls.__module__] for cls in type(elbo).__mro__}  # e.g. TraceMeanField_ELBO's and Trace_ELBO's
    saved = [(module, name, getattr(module, name)) for module in modules for name in replacements
             if hasattr(module, name)]
    for module, name, _ in saved:
        setattr(module, name, replacements[name])
    try:
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def check_estimator(estimator: str, guide: Callable, batch: Batch) -> None:
    """Raise a ValueError when ``estimator`` cannot give useful gradients for ``guide``.

    Sites without reparameterised samples (e.g. ``mask_gradient="score"``) need the score-function
    estimator with baselines: "trace" would use an unbaselined, high-variance surrogate and
    "mean_field" supports reparameterised guides only.
    """
    trace = poutine.trace(guide).get_trace(batch)
    score_sites = sorted(name for name, site in trace.nodes.items()
                         if site["type"] == "sample" and not site["is_observed"]
                         and not site_is_subsample(site) and not site["fn"].has_rsample)
    if score_sites and estimator != "tracegraph":
        raise ValueError(
            f"estimator={estimator!r} cannot train the score-function sites {score_sites} of this guide: "
            "use estimator='tracegraph' (score function with baselines) or a reparameterised guide "
            "(mask_gradient='straight_through')."
        )

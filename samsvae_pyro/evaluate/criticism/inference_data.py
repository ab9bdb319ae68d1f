"""ArviZ export of posterior predictive draws (optional dependency: ``pip install samsvae-pyro[arviz]``).

What is exported, as one chain of R draws: ``posterior`` holds the global sites (E, mask, mask_prob;
none for the conditional VAE) drawn from the guide, ``posterior_predictive`` the counts x replicated
for the chosen cells (each draw with its own globals; z_basal from the encoder or the prior, as in
:mod:`.check`), ``observed_data`` their observed counts. The per-cell latents z_basal are not
exported: they are amortised (one encoder output per cell), not posterior draws of a fixed parameter.

Which ArviZ functions are meaningful for an amortised VAE fitted by variational inference:

- valid: ``az.plot_ppc`` (observed vs replicated count distributions, all cells and genes pooled or one
  gene via ``coords``), ``az.plot_bpv`` (Bayesian p-values / u-values of a test statistic),
  ``az.plot_posterior``, ``az.hdi`` and ``az.summary(kind="stats")`` on the global sites; these
  summarise q, the variational approximation, not the exact posterior.
- not valid: R-hat, ESS and MCSE (``az.summary(kind="diagnostics")``, ``az.rhat``, ``az.ess``,
  ``az.plot_trace``, ``az.plot_rank``): the draws are independent samples of q, not a Markov chain,
  so these report ideal values whatever the fit. ``az.loo``, ``az.waic``, ``az.compare``,
  ``az.plot_loo_pit`` and ``az.plot_khat`` need pointwise log-likelihoods under exact posterior draws
  of every latent, including each cell's z_basal, which an amortised guide does not provide; compare
  models with the held-out IWELBO (``model.iwelbo``) instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from samsvae_pyro.data import MinibatchLoader, PerturbationData
from samsvae_pyro._typing import CheckMode
from samsvae_pyro.evaluate.criticism.check import check_arguments, replicate
from samsvae_pyro.evaluate.predictive import sample_globals
from samsvae_pyro.models.plates import E, MASK, MASK_PROB

GLOBAL_DIMS = {E: ["perturbation", "latent"], MASK: ["perturbation", "latent"], MASK_PROB: ["perturbation", "latent"]}


@torch.no_grad()
def to_inference_data(model: Callable, guide: Callable, data: PerturbationData, cells: np.ndarray, *,
                      n_samples: int = 20, mode: CheckMode = "in_sample", batch_size: int = 256,
                      device: torch.device | str | None = None):
    """An ``arviz.InferenceData`` of R posterior draws for the cells ``cells`` (see the module docstring).

    Returns
    -------
    InferenceData with groups posterior (global sites, (1, R, T, K)), posterior_predictive and observed_data
    (``x``: (1, R, N, G) and (N, G)), coordinates cell, gene, perturbation, latent, and ``attrs["mode"]``.
    Memory: R x N x G floats; choose the cells accordingly.
    """
    try:
        import arviz as az
    except ImportError as error:  # an optional extra
        raise ImportError("to_inference_data needs ArviZ: pip install 'samsvae-pyro[arviz]' (or arviz<1).") from error
    (mode,) = check_arguments(model, n_samples, (mode,))
    loader = MinibatchLoader(data, cells, batch_size=batch_size, shuffle=False, device=device)
    globals_ = sample_globals(guide, next(iter(loader)), n_samples)
    replicated, observed = [], []
    for batch in loader:
        replicated.append(replicate(model, guide, batch, globals_, mode).cpu())
        observed.append(batch["x"].cpu())
    posterior = {name: value.cpu().numpy()[None] for name, value in globals_.items()}
    coords = {"cell": np.asarray(data.obs_names[np.asarray(cells)]), "gene": np.asarray(data.var_names),
              "perturbation": list(data.vocabulary.perturbations), "latent": np.arange(model.n_latent)}
    return az.from_dict(posterior=posterior, posterior_predictive={"x": torch.cat(replicated, 1).numpy()[None]},
                        observed_data={"x": torch.cat(observed).numpy()}, coords=coords,
                        dims={"x": ["cell", "gene"], **{k: v for k, v in GLOBAL_DIMS.items() if k in posterior}},
                        attrs={"mode": mode})

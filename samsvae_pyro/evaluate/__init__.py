"""Evaluation: treatment effects, metrics, mask recovery, baselines, latent tables and plots
(docs/model.md, sections 5 and 8).

Tensor- and AnnData-level computation only: the model-dependent pieces (IWELBO, model ATE, prediction,
posterior effects, decoder response) take the Pyro model and guide and go through Pyro traces in
``predictive.py``, ``iwelbo.py``, ``effects.py`` and ``latent_dims.py``; nothing here imports the API.
The report of a run on disk is :func:`samsvae_pyro.runs.evaluate_run`. Each name's module is imported on
first use (scikit-learn and matplotlib only when mask metrics or plots are asked for).
"""

from typing import TYPE_CHECKING

from samsvae_pyro._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ["ate_anndata", "ate_transform", "condition_split_flags", "data_ate", "perturbseq_transform"],
        "samsvae_pyro.evaluate.ate",
    ),
    **dict.fromkeys(
        ["additive_baseline", "control_mean_baseline", "linear_baseline", "perturbed_mean_baseline",
         "perturbed_reference", "training_mean_baseline"],
        "samsvae_pyro.evaluate.baselines",
    ),
    **dict.fromkeys(["posterior_effects"], "samsvae_pyro.evaluate.effects"),
    **dict.fromkeys(
        ["decoder_response", "genes_per_dim", "perturbations_per_dim"],
        "samsvae_pyro.evaluate.latent_dims",
    ),
    **dict.fromkeys(
        ["effect_residuals", "identifiable_latents", "mask_recovery", "mean_correlation_coefficient"],
        "samsvae_pyro.evaluate.mask_metrics",
    ),
    **dict.fromkeys(
        ["ate_metrics", "energy_distance", "interval_coverage", "per_condition_metrics"],
        "samsvae_pyro.evaluate.metrics",
    ),
    **dict.fromkeys(
        ["plot_ate_scatter", "plot_mask_heatmap", "plot_metric_distribution", "plot_training_curves"],
        "samsvae_pyro.evaluate.plots",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from samsvae_pyro.evaluate.ate import (
        ate_anndata,
        ate_transform,
        condition_split_flags,
        data_ate,
        perturbseq_transform,
    )
    from samsvae_pyro.evaluate.baselines import (
        additive_baseline,
        control_mean_baseline,
        linear_baseline,
        perturbed_mean_baseline,
        perturbed_reference,
        training_mean_baseline,
    )
    from samsvae_pyro.evaluate.effects import posterior_effects
    from samsvae_pyro.evaluate.latent_dims import decoder_response, genes_per_dim, perturbations_per_dim
    from samsvae_pyro.evaluate.mask_metrics import (
        effect_residuals,
        identifiable_latents,
        mask_recovery,
        mean_correlation_coefficient,
    )
    from samsvae_pyro.evaluate.metrics import (
        ate_metrics,
        energy_distance,
        interval_coverage,
        per_condition_metrics,
    )
    from samsvae_pyro.evaluate.plots import (
        plot_ate_scatter,
        plot_mask_heatmap,
        plot_metric_distribution,
        plot_training_curves,
    )

__all__ = [
    # treatment effects
    "ate_anndata",
    "ate_transform",
    "condition_split_flags",
    "data_ate",
    "perturbseq_transform",
    # metrics
    "ate_metrics",
    "energy_distance",
    "interval_coverage",
    "per_condition_metrics",
    "effect_residuals",
    "identifiable_latents",
    "mask_recovery",
    "mean_correlation_coefficient",
    # latent structure
    "decoder_response",
    "genes_per_dim",
    "perturbations_per_dim",
    "posterior_effects",
    # baselines
    "additive_baseline",
    "control_mean_baseline",
    "linear_baseline",
    "perturbed_mean_baseline",
    "perturbed_reference",
    "training_mean_baseline",
    # plots
    "plot_ate_scatter",
    "plot_mask_heatmap",
    "plot_metric_distribution",
    "plot_training_curves",
]

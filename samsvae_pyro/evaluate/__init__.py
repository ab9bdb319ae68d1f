"""Evaluation: treatment effects, metrics, mask recovery, baselines and report plots (spec sections 5 and 8).

Model-independent pieces live here; the model-dependent ones (IWELBO, model ATE, prediction) go
through Pyro traces in ``predictive.py`` and ``iwelbo.py``.
"""

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
from samsvae_pyro.evaluate.mask_metrics import mask_recovery, mean_correlation_coefficient
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
    "mask_recovery",
    "mean_correlation_coefficient",
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

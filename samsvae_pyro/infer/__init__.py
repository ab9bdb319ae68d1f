"""Inference: estimators, minibatch weighting, the SVI training loop, the multi-device path."""

from samsvae_pyro.infer.estimators import ESTIMATORS, check_estimator, make_elbo
from samsvae_pyro.infer.options import check_training_arguments
from samsvae_pyro.infer.trainer import SVITrainer, TrainingDivergedError
from samsvae_pyro.infer.weighting import WEIGHTINGS, GlobalSiteScale, per_perturbation_weights, weighting_context

__all__ = [
    "ESTIMATORS", "WEIGHTINGS", "GlobalSiteScale", "SVITrainer", "TrainingDivergedError", "check_estimator",
    "check_training_arguments", "make_elbo", "per_perturbation_weights", "weighting_context",
]

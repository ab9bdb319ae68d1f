"""Latent structure of a trained model: which perturbations act alike, and what each latent dimension does.

Issue 6 (the paper's interpretability claim): perturbation similarity from the posterior effects E * M
(or the inclusion probabilities), hierarchical clustering, a score of how well the similarity recovers a
known grouping (AUROC of same-group pairs and adjusted Rand index, against a label-permutation null),
and per latent dimension the perturbations that switch it on and the genes it moves.
:func:`interpret_model` runs everything and writes tables and plots; ``samsvae interpret`` is its
command line.
"""

from samsvae_pyro.interpret.effects import posterior_effects
from samsvae_pyro.interpret.grouping import (
    GroupingScore,
    group_labels,
    grouping_score,
    groups_from_pathways,
    read_groups,
)
from samsvae_pyro.interpret.latent_dims import decoder_response, genes_per_dim, perturbations_per_dim
from samsvae_pyro.interpret.plots import plot_grouping_null, plot_similarity_heatmap
from samsvae_pyro.interpret.report import interpret_model
from samsvae_pyro.interpret.similarity import cluster_perturbations, perturbation_similarity, similarity_linkage

__all__ = [
    # posterior effects and similarity
    "posterior_effects",
    "perturbation_similarity",
    "similarity_linkage",
    "cluster_perturbations",
    # groupings and their score
    "GroupingScore",
    "group_labels",
    "grouping_score",
    "groups_from_pathways",
    "read_groups",
    # latent dimensions
    "decoder_response",
    "genes_per_dim",
    "perturbations_per_dim",
    # plots and report
    "plot_grouping_null",
    "plot_similarity_heatmap",
    "interpret_model",
]

"""Latent structure: which perturbations act alike (DataFrame-level similarity, clustering and grouping).

Issue 6 (the paper's interpretability claim): perturbation similarity from the posterior effects E * M
(or the inclusion probabilities), hierarchical clustering, a score of how well the similarity recovers a
known grouping (AUROC of same-group pairs and adjusted Rand index, against a label-permutation null).

The tables read from the model (posterior effects, decoder response, per latent dimension the
perturbations that switch it on and the genes it moves) are in :mod:`samsvae_pyro.evaluate`;
:func:`samsvae_pyro.runs.interpret_run` runs everything and writes tables and plots; ``samsvae interpret``
is its command line.
"""

from samsvae_pyro.interpret.grouping import (
    GroupingScore,
    group_labels,
    grouping_score,
    groups_from_pathways,
    read_groups,
)
from samsvae_pyro.interpret.plots import plot_grouping_null, plot_similarity_heatmap
from samsvae_pyro.interpret.similarity import cluster_perturbations, perturbation_similarity, similarity_linkage

__all__ = [
    # similarity
    "perturbation_similarity",
    "similarity_linkage",
    "cluster_perturbations",
    # groupings and their score
    "GroupingScore",
    "group_labels",
    "grouping_score",
    "groups_from_pathways",
    "read_groups",
    # plots
    "plot_grouping_null",
    "plot_similarity_heatmap",
]

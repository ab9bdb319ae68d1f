"""Shared types, every string choice of the public API (a ``Literal``; its tuple is ``typing.get_args``),
and the shape alphabet.

Shape letters used in every docstring and shape comment of the package:

====  ==========================================
S     particles (posterior samples drawn in parallel)
B     cells in the current batch
N     cells in the whole (sub)set being modelled
T     perturbations (columns of the dosage matrix D)
K     latent dimensions
G     genes
H     hidden units of an MLP
====  ==========================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal, TypedDict

if TYPE_CHECKING:  # annotations only: the command line reads the choices without loading torch
    from torch import Tensor

Likelihood = Literal["nb", "poisson", "normal"]
SAMSGuideName = Literal["correlated", "mean_field"]  # the guides of SAMS-VAE (and CPA-VAE)
GuideName = Literal[SAMSGuideName, "svae_plus", "conditional"]
EstimatorName = Literal["trace", "mean_field", "tracegraph"]
Weighting = Literal["plated", "per_perturbation"]
Encoding = Literal["sum", "unique"]
MaskPrior = Literal["bernoulli", "beta_bernoulli"]
GuideFactory = Callable[..., Any]  # factory(model, **stats) -> guide, or a guide module (also callable)
AteMethod = Literal["perturbseq", "mean"]
DatasetName = Literal["norman", "replogle"]
IwelboKind = Literal["predictive", "joint"]
LatentKind = Literal["basal", "perturbed"]
PredictMode = Literal["generative", "counterfactual"]
SplitName = Literal["train", "val", "test", "excluded"]  # data.splits.SPLITS
CheckMode = Literal["in_sample", "generative"]  # posterior predictive checks: z_basal from the encoder or the prior
Sampling = Literal["auto", "cells", "blocks"]  # training batches: data.batches.SAMPLINGS
SimilarityMetric = Literal["cosine", "correlation"]
SimilaritySource = Literal["effects", "mask"]


class Batch(TypedDict):
    """One minibatch, as yielded by :class:`samsvae_pyro.data.MinibatchLoader`.

    x : (B, G) float32 counts (or values for the normal likelihood); ``None`` when sampling.
    D : (B, T) float32 dosages.
    library : (B,) float32 library sizes (sum of the modelled genes' counts).
    index : (B,) int64 row positions of the cells in the full dataset.
    n_cells : int, size N of the cell set the batch was drawn from (the cells plate size).
    """

    x: Tensor | None
    D: Tensor
    library: Tensor
    index: Tensor
    n_cells: int

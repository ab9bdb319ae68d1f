"""Perturbation-by-perturbation similarity and its hierarchical clustering (issue 6, latent structure).

Two perturbations are similar when they move the same latent dimensions in the same directions: the
similarity of their rows of posterior effects (or of inclusion probabilities) is the cosine (default) or
the Pearson correlation across latent dimensions. Clustering is average linkage on 1 - similarity.
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from samsvae_pyro._typing import SimilarityMetric

METRICS = get_args(SimilarityMetric)


def perturbation_similarity(values: pd.DataFrame, *, metric: SimilarityMetric = "cosine") -> pd.DataFrame:
    """Similarity of the perturbations' rows across latent dimensions.

    Parameters
    ----------
    values
        One row per perturbation, e.g. posterior effects or inclusion probabilities.
    metric
        ``"cosine"`` (signs matter, magnitudes do not) or ``"correlation"`` (rows centred first).
        A row without variation (e.g. a perturbation with no effect) has similarity 0 to every other row.

    Returns
    -------
    Symmetric similarities in [-1, 1], 1 on the diagonal, indexed by perturbation on both axes.

    Shapes
    ------
    values : (T, K); returns (T, T).

    Examples
    --------
    >>> values = pd.DataFrame([[1.0, 0.0], [2.0, 0.0], [0.0, -1.0]], index=["A", "B", "C"])
    >>> perturbation_similarity(values).to_numpy()
    array([[1., 1., 0.],
           [1., 1., 0.],
           [0., 0., 1.]])
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not supported; choose one of {list(METRICS)}.")
    x = values.to_numpy(dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"values must be a 2-d table of finite numbers (perturbations x dims); got {x.shape}.")
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)
    similarity = np.clip(unit @ unit.T, -1.0, 1.0)  # (T, T)
    np.fill_diagonal(similarity, 1.0)
    return pd.DataFrame(similarity, index=values.index, columns=values.index)


def similarity_linkage(similarity: pd.DataFrame) -> np.ndarray:
    """Average-linkage tree (scipy format) of the distance 1 - similarity. Shapes: (T, T) -> (T - 1, 4)."""
    distance = np.clip(1.0 - similarity.to_numpy(dtype=float), 0.0, 2.0)
    distance = (distance + distance.T) / 2
    np.fill_diagonal(distance, 0.0)
    return linkage(squareform(distance, checks=False), method="average")


def cluster_perturbations(similarity: pd.DataFrame, *, n_clusters: int | None = None,
                          min_similarity: float = 0.5) -> pd.DataFrame:
    """Hierarchical clusters of perturbations and their dendrogram order.

    Parameters
    ----------
    similarity
        Output of :func:`perturbation_similarity`.
    n_clusters
        Cut the tree into this many clusters; ``None`` cuts it where the average similarity between
        two merged clusters falls below ``min_similarity``.
    min_similarity
        Threshold used when ``n_clusters`` is ``None``.

    Returns
    -------
    Table indexed by perturbation (in ``similarity``'s order): ``cluster`` (1, 2, ... numbered in
    dendrogram order) and ``position`` (place in the dendrogram order, for ordering heatmaps).

    Shapes
    ------
    similarity : (T, T); returns T rows.
    """
    n = len(similarity)
    if n_clusters is not None and not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters={n_clusters} must lie between 1 and the number of perturbations ({n}).")
    if n < 2:
        return pd.DataFrame({"cluster": np.ones(n, dtype=int), "position": np.arange(n)}, index=similarity.index)
    tree = similarity_linkage(similarity)
    raw = (fcluster(tree, n_clusters, criterion="maxclust") if n_clusters is not None
           else fcluster(tree, 1.0 - min_similarity, criterion="distance"))
    order = leaves_list(tree)
    position = np.empty(n, dtype=int)
    position[order] = np.arange(n)
    first_seen = pd.unique(raw[order])  # clusters in dendrogram order
    renumber = {old: new for new, old in enumerate(first_seen, start=1)}
    return pd.DataFrame({"cluster": [renumber[c] for c in raw], "position": position}, index=similarity.index)

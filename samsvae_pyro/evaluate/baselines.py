"""Simple ATE baselines that deep perturbation models must beat (docs/model.md, section 8).

Every baseline predicts the ATE of the conditions and genes of a reference ATE (``truth_like``,
usually :func:`~samsvae_pyro.evaluate.data_ate` on all cells) from the data ATE of the training
cells only, and returns the same AnnData structure, with ``truth_like.obs`` copied so the split
flags travel along. A condition a baseline cannot predict gets a NaN row and is listed in
``uns["undefined_conditions"]``; the metrics skip such rows and count them.

- control mean: no change (ATE 0).
- training mean: the mean of the training conditions' ATEs, the same row for every condition. This is
  Systema's perturbed-mean baseline (Vinas Torne et al., 2025: the average of the training
  perturbations' centroids, here minus the control centroid), also named
  :func:`perturbed_mean_baseline`; its row is the reference of Systema's centred metrics
  (:func:`perturbed_reference`, ``ate_metrics(..., reference=...)``).
- additive: ctrl + sum of (single - ctrl), i.e. the sum of the members' training single ATEs.
- linear (Ahlmann-Eltze, Huber and Anders, 2025): Y ~ G W P^T + b on the training ATE matrix
  Y (genes x training conditions), b its row means, G the top principal components of Y - b,
  P the rows of G at each condition's target genes, W the two-sided ridge solution
  W = (G^T G + lambda I)^-1 G^T (Y - b) P (P^T P + lambda I)^-1 of that paper.
  When the targets are not measured genes (e.g. a screen's genes selected without its targets),
  ``embedding="training"`` takes P from the training data instead, as that paper also does: a
  perturbation's row of P is its training single's principal component scores, (y_t - b) U_K.

Deliberate deviations: the linear model works on ATEs (expression change) rather than on
expression (the intercept b absorbs the difference), and a combination's embedding is the sum of
its members' rows of G, the latent additivity SAMS-VAE also assumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.linalg
from anndata import AnnData

from samsvae_pyro._typing import AteMethod
from samsvae_pyro.evaluate.ate import ate_anndata, data_ate

if TYPE_CHECKING:
    from samsvae_pyro.data import PerturbationData


def control_mean_baseline(truth_like: AnnData) -> AnnData:
    """Predicted ATE 0 for every condition and gene (the control mean is the prediction).

    Parameters
    ----------
    truth_like
        Reference ATE whose conditions, genes and obs the prediction takes.

    Returns
    -------
    ATE AnnData of zeros.

    Shapes
    ------
    truth_like : (C, G). returns : (C, G).
    """
    return _baseline(np.zeros(truth_like.shape), truth_like)


def training_mean_baseline(
    data: PerturbationData, truth_like: AnnData, *, method: AteMethod = "perturbseq"
) -> AnnData:
    """Predicted ATE = mean of the training conditions' ATEs, the same for every condition.

    Parameters
    ----------
    data
        Dataset whose training cells define the baseline.
    truth_like
        Reference ATE whose conditions, genes and obs the prediction takes.
    method
        ATE transform, as in :func:`~samsvae_pyro.evaluate.data_ate`.

    Returns
    -------
    ATE AnnData.

    Shapes
    ------
    returns : (C, G) like ``truth_like``.
    """
    reference = perturbed_reference(data, truth_like, method=method)
    return _baseline(np.broadcast_to(reference, truth_like.shape), truth_like)


perturbed_mean_baseline = training_mean_baseline  # Systema's name for the same prediction


def perturbed_reference(
    data: PerturbationData, truth_like: AnnData, *, method: AteMethod = "perturbseq"
) -> np.ndarray:
    """Systema's reference: the mean over training conditions of their training ATEs, on ``truth_like``'s genes.

    Equal to the average of the training perturbations' centroids minus the control centroid, so
    ``pred - reference`` and ``truth - reference`` are the changes from the mean perturbed state
    that :func:`~samsvae_pyro.evaluate.ate_metrics` scores when given ``reference``.

    Parameters
    ----------
    data
        Dataset whose training cells define the reference.
    truth_like
        Reference ATE whose genes the result follows.
    method
        ATE transform, as in :func:`~samsvae_pyro.evaluate.data_ate`.

    Returns
    -------
    The reference effect.

    Shapes
    ------
    returns : (G,) for the G genes of ``truth_like``.
    """
    return _training_ate(data, truth_like, method=method).X.mean(axis=0)


def additive_baseline(
    data: PerturbationData, truth_like: AnnData, *, method: AteMethod = "perturbseq"
) -> AnnData:
    """Predicted ATE of a condition = sum of its members' training single-perturbation ATEs.

    A single is predicted by its own training ATE. A condition with a member that has no training
    single gets a NaN row (listed in ``uns["undefined_conditions"]``).

    Parameters
    ----------
    data
        Dataset whose training cells define the baseline.
    truth_like
        Reference ATE whose conditions, genes and obs the prediction takes.
    method
        ATE transform, as in :func:`~samsvae_pyro.evaluate.data_ate`.

    Returns
    -------
    ATE AnnData.

    Shapes
    ------
    returns : (C, G) like ``truth_like``.
    """
    train = _training_ate(data, truth_like, method=method)
    members = _member_matrix(data, truth_like.obs_names, _single_rows(data, train.obs_names), n_columns=train.n_obs)
    return _baseline(members @ train.X, truth_like)


def linear_baseline(
    data: PerturbationData,
    truth_like: AnnData,
    *,
    n_components: int = 10,
    ridge: float = 0.1,
    target_genes: Mapping[str, str] | None = None,
    embedding: str = "target_genes",
    method: AteMethod = "perturbseq",
) -> AnnData:
    """Linear model Y ~ G W P^T + b of Ahlmann-Eltze et al. (2025) fitted to the training ATEs.

    Parameters
    ----------
    data
        Dataset whose training cells define the baseline; all its genes enter the fit.
    truth_like
        Reference ATE whose conditions, genes and obs the prediction takes.
    n_components
        Dimension K of the gene embedding G (principal components of the centred training ATEs).
    ridge
        Penalty lambda on W.
    target_genes
        Perturbation name -> targeted gene; names not in the mapping target the gene of their own
        name. Conditions with a target that is not among ``data.var_names`` get NaN rows.
    embedding
        Where P comes from: ``"target_genes"`` (the rows of G at the targets) or ``"training"`` (each
        member's training single's principal component scores; a condition with a member without a
        training single gets a NaN row, and a single is predicted from its own training ATE).
    method
        ATE transform, as in :func:`~samsvae_pyro.evaluate.data_ate`.

    Returns
    -------
    ATE AnnData: b + G W p for each condition with embedding p (sum over its members' rows of P);
    ``uns["embedding"]`` says which P was used.

    Shapes
    ------
    G : (G_all, K). W : (K, K). P : (training conditions, K). returns : (C, G) like ``truth_like``.

    References
    ----------
    Ahlmann-Eltze, Huber, Anders (2025). Deep-learning-based gene perturbation effect prediction
    does not yet outperform simple linear baselines. Nature Methods.
    """
    train = _training_ate(data, truth_like, method=method, all_genes=True)
    if embedding == "target_genes":
        columns = _target_columns(data, [*train.obs_names, *truth_like.obs_names], target_genes or {})
        n_columns = train.n_vars
    elif embedding == "training":
        columns, n_columns = _single_rows(data, train.obs_names), train.n_obs
    else:
        raise ValueError(f"embedding={embedding!r} is not supported; choose 'target_genes' or 'training'.")
    fit_members = _member_matrix(data, train.obs_names, columns, n_columns=n_columns)
    fitted = np.isfinite(fit_members).all(axis=1)
    _check_linear_settings(int(fitted.sum()), n_genes=train.n_vars, n_components=n_components, ridge=ridge,
                           embedding=embedding)
    intercept = train.X[fitted].mean(axis=0)  # (G_all,)
    centred = (train.X[fitted] - intercept).T  # (G_all, P)
    genes = _gene_embedding(centred, n_components=n_components)  # (G_all, K)
    rows = genes if embedding == "target_genes" else _condition_scores(train.X - intercept, genes)  # (n_columns, K)
    weights = _two_sided_ridge(genes, centred, fit_members[fitted] @ rows, ridge=ridge)  # (K, K)
    embedded = _member_matrix(data, truth_like.obs_names, columns, n_columns=n_columns) @ rows  # (C, K)
    predicted = intercept + embedded @ weights.T @ genes.T  # (C, G_all)
    prediction = _baseline(predicted[:, _gene_positions(data, truth_like)], truth_like)
    prediction.uns["embedding"] = embedding
    return prediction


def _check_linear_settings(
    n_fitted: int, *, n_genes: int, n_components: int, ridge: float, embedding: str
) -> None:
    """ValueError unless the linear model can be fitted with these settings."""
    if ridge < 0:
        raise ValueError(f"ridge={ridge!r} must be non-negative; the paper uses 0.1.")
    embeddable = ("training conditions whose targets are measured genes" if embedding == "target_genes"
                  else "training conditions whose members all have training singles")
    if n_fitted == 0:
        raise ValueError(
            "no training condition targets a measured gene; map names to genes with target_genes, or use "
            "embedding='training'." if embedding == "target_genes"
            else "no training condition is made of perturbations with training singles; use embedding='target_genes'."
        )
    if not 1 <= n_components <= min(n_genes, n_fitted):
        raise ValueError(
            f"n_components={n_components!r} must lie in [1, {min(n_genes, n_fitted)}], the smaller of "
            f"the numbers of genes and of {embeddable}; lower it"
            + (", or use embedding='training'." if embedding == "target_genes" else ".")
        )


def _training_ate(
    data: PerturbationData, truth_like: AnnData, *, method: AteMethod, all_genes: bool = False
) -> AnnData:
    """Data ATE of the training cells, restricted to ``truth_like``'s genes unless ``all_genes``."""
    train = data_ate(data, method=method, cells=data.indices("train"))
    return train if all_genes else train[:, _gene_positions(data, truth_like)].copy()


def _gene_positions(data: PerturbationData, truth_like: AnnData) -> np.ndarray:
    """Positions of ``truth_like``'s genes among ``data.var_names``; names the missing ones."""
    positions = pd.Index(data.var_names).get_indexer(truth_like.var_names)
    if (positions < 0).any():
        missing = list(truth_like.var_names[positions < 0][:5])
        raise ValueError(f"truth_like has genes {missing} that data lacks; pass an ATE of this data.")
    return positions


def _baseline(values: np.ndarray, truth_like: AnnData) -> AnnData:
    """Prediction AnnData shaped like ``truth_like``; NaN rows listed in ``uns["undefined_conditions"]``."""
    prediction = ate_anndata(values, truth_like.obs_names, truth_like.var_names, obs=truth_like.obs)
    prediction.uns["undefined_conditions"] = list(truth_like.obs_names[np.isnan(prediction.X).any(axis=1)])
    return prediction


def _member_matrix(
    data: PerturbationData, labels: Sequence[str], columns: Mapping[str, int], *, n_columns: int
) -> np.ndarray:
    """Indicator of each label's members over columns; NaN rows where a member has no column.

    Shapes
    ------
    returns : (len(labels), n_columns).
    """
    matrix = np.zeros((len(labels), n_columns))
    for row, label in enumerate(labels):
        members = data.vocabulary.parse(label)
        if all(member in columns for member in members):
            matrix[row, [columns[member] for member in members]] = 1.0
        else:
            matrix[row] = np.nan
    return matrix


def _single_rows(data: PerturbationData, labels: Sequence[str]) -> dict[str, int]:
    """Perturbation name -> position of its single-perturbation condition among ``labels``."""
    parsed = [data.vocabulary.parse(label) for label in labels]
    return {members[0]: row for row, members in enumerate(parsed) if len(members) == 1}


def _condition_scores(centred_rows: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """Principal component scores of conditions, (y_t - b) U_K, with U_K the unit gene loadings.

    Shapes
    ------
    centred_rows : (P, G). genes : (G, K) = U_K S_K. returns : (P, K).
    """
    norms = np.linalg.norm(genes, axis=0)
    return centred_rows @ (genes / np.where(norms > 0, norms, 1.0))


def _target_columns(
    data: PerturbationData, labels: Sequence[str], target_genes: Mapping[str, str]
) -> dict[str, int]:
    """Member name -> position of its target gene in ``data.var_names``, for measured targets only."""
    genes = pd.Index(data.var_names)
    names = {member for label in labels for member in data.vocabulary.parse(label)}
    targets = {name: target_genes.get(name, name) for name in names}
    return {name: genes.get_loc(target) for name, target in targets.items() if target in genes}


def _gene_embedding(centred: np.ndarray, *, n_components: int) -> np.ndarray:
    """Principal component scores of the genes, U_K S_K, from the smaller Gram matrix of Y.

    Only the top K eigenpairs are computed (much faster than a full SVD for K << min(G, P)).

    Shapes
    ------
    centred : (G, P). returns : (G, n_components).
    """
    by_columns = centred.shape[1] <= centred.shape[0]
    gram = centred.T @ centred if by_columns else centred @ centred.T  # (min(G, P),) * 2
    n = len(gram)
    values, vectors = scipy.linalg.eigh(gram, subset_by_index=[n - n_components, n - 1])
    if by_columns:
        return centred @ vectors[:, ::-1]  # Y V_K = U_K S_K
    return vectors[:, ::-1] * np.sqrt(np.clip(values[::-1], 0.0, None))


def _two_sided_ridge(
    genes: np.ndarray, centred: np.ndarray, perturbations: np.ndarray, *, ridge: float
) -> np.ndarray:
    """W = (G^T G + lambda I)^-1 G^T Y P (P^T P + lambda I)^-1.

    Shapes
    ------
    genes : (G, K). centred : (G, P). perturbations : (P, K). returns : (K, K).
    """
    identity = np.eye(genes.shape[1])
    left = np.linalg.solve(genes.T @ genes + ridge * identity, genes.T @ centred @ perturbations)
    return np.linalg.solve(perturbations.T @ perturbations + ridge * identity, left.T).T

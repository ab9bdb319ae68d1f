"""How well a perturbation similarity recovers a known grouping, against a permutation null (issue 6).

A grouping maps group names (complexes, pathways, simulated groups) to perturbation names.
Perturbations in no group are allowed and left out of the score; a name the model does not know, or a
perturbation in two groups, is an error. Over the grouped perturbations only:

- AUROC: similarity as a classifier of pairs, same group (positive) vs different groups (negative);
  0.5 is chance, 1 means every same-group pair is more similar than every different-group pair.
- ARI: adjusted Rand index between the groups and an average-linkage clustering of the similarity
  into as many clusters as there are groups (unless ``n_clusters`` says otherwise).

The null shuffles the group labels among the grouped perturbations (group sizes kept), so it asks
whether the grouping matches the similarity better than a random grouping of the same sizes. Both
statistics are computed for every permutation in closed form from quantities a permutation does not
change (pair ranks, cluster sizes), so 1,000 permutations take well under a second for hundreds of
perturbations. Reported: observed value, null mean and sd, z-score (observed - mean) / sd, and the
permutation p-value (1 + #{null >= observed}) / (1 + n_permutations).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import rankdata

from samsvae_pyro.data.labels import format_names
from samsvae_pyro.interpret.similarity import cluster_perturbations

STATISTICS = ("auroc", "ari")
_CHUNK = 10_000_000  # permutations x pairs held in memory at once


@dataclass(frozen=True)
class GroupingScore:
    """Observed grouping scores and their permutation null.

    Attributes
    ----------
    table
        Rows ``auroc`` and ``ari``; columns ``observed``, ``null_mean``, ``null_sd``, ``z_score``, ``p_value``.
    null
        The statistics under each label permutation, columns ``auroc`` and ``ari``.
    clusters
        Cluster of each grouped perturbation (the clustering the ARI is computed on).
    n_groups, n_same_pairs, n_different_pairs
        Groups with members, and the numbers of positive and negative pairs of the AUROC.
    """

    table: pd.DataFrame
    null: pd.DataFrame
    clusters: pd.Series
    n_groups: int
    n_same_pairs: int
    n_different_pairs: int

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (statistic -> column -> value) plus the counts, for JSON."""
        return {**{name: self.table.loc[name].to_dict() for name in self.table.index},
                "n_grouped": int(len(self.clusters)), "n_groups": self.n_groups,
                "n_same_pairs": self.n_same_pairs, "n_different_pairs": self.n_different_pairs,
                "n_permutations": int(len(self.null))}


# ---------------------------------------------------------------- reading and checking groupings


def read_groups(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a grouping file: ``.json`` ({group: [perturbations]}) or ``.csv`` / ``.tsv`` (columns perturbation, group).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "g.csv").write_text("perturbation,group\\nA,x\\nB,x\\nC,y\\n")
    ...     read_groups(Path(tmp) / "g.csv")
    {'x': ['A', 'B'], 'y': ['C']}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected a .json, .csv or .tsv grouping file).")
    if path.suffix == ".json":
        try:
            groups = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); write {{\"group\": [\"perturbation\", ...]}}.") \
                from error
        if not isinstance(groups, dict) or not all(isinstance(v, list) for v in groups.values()):
            raise ValueError(f"{path} must hold one JSON object mapping each group to a list of perturbations.")
        return {str(g): [str(p) for p in members] for g, members in groups.items()}
    if path.suffix not in (".csv", ".tsv"):
        raise ValueError(f"{path} should end in .json, .csv or .tsv.")
    table = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str)
    missing = {"perturbation", "group"}.difference(table.columns)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {sorted(missing)}; give one row per perturbation with "
                         f"columns 'perturbation' and 'group' (found {list(table.columns)}).")
    table = table.dropna(subset=["perturbation", "group"])
    return {g: list(rows["perturbation"]) for g, rows in table.groupby("group", sort=False)}


def group_labels(groups: Mapping[str, Iterable[str]], perturbations: Sequence[str]) -> pd.Series:
    """The group of each perturbation (``None`` when in no group), after checking the grouping.

    Parameters
    ----------
    groups
        Group name -> member perturbation names (any iterable of strings).
    perturbations
        The model's perturbation names (e.g. the index of :meth:`~samsvae_pyro.api.base.PerturbationModel.posterior_effects`).

    Returns
    -------
    Series indexed by ``perturbations``.

    Raises
    ------
    ValueError
        When a member is not a known perturbation, a perturbation is in two groups, or fewer than two
        groups have members or no group has two (nothing to score).
    """
    if not isinstance(groups, Mapping):
        raise ValueError(f"groups must map group names to lists of perturbations, got {type(groups).__name__}.")
    perturbations = [str(p) for p in perturbations]
    known, labels = set(perturbations), {}
    members = {str(g): _names(ps) for g, ps in groups.items()}
    unknown = sorted({p for ps in members.values() for p in ps} - known)
    if unknown:
        raise ValueError(f"the grouping names {len(unknown)} perturbation(s) the model does not know: "
                         f"{format_names(unknown)}; use the model's perturbation names (e.g. "
                         f"{format_names(perturbations[:3])}), or map gene-level pathways to them with "
                         "groups_from_pathways (--pathways on the command line).")
    for group, ps in members.items():
        for p in ps:
            if labels.setdefault(p, group) != group:
                raise ValueError(f"perturbation {p!r} is in groups {labels[p]!r} and {group!r}; "
                                 "put each perturbation in at most one group.")
    _check_scorable(pd.Series(labels, dtype=object))
    return pd.Series([labels.get(p) for p in perturbations], index=perturbations, dtype=object, name="group")


def _names(values: str | Iterable[str]) -> list[str]:
    """A list of names from a single name, a list or an array (h5ad stores lists as arrays)."""
    return [values] if isinstance(values, str) else [str(v) for v in values]


def _check_scorable(labels: pd.Series) -> None:
    sizes = labels.value_counts()
    largest = int(sizes.max()) if len(sizes) else 0
    if len(sizes) < 2 or largest < 2:
        raise ValueError(f"the grouping has {len(sizes)} non-empty group(s) of at most {largest} perturbation(s); "
                         "scoring needs at least two groups and one group with two or more members.")


def groups_from_pathways(adata: AnnData, perturbations: Sequence[str], *,
                         pathways: Mapping[str, Iterable[str]] | None = None, perturbation_key: str | None = "sgID_AB",
                         target_key: str | None = "gene") -> dict[str, list[str]]:
    """Map gene-level pathways (complex -> genes) to the model's perturbations through their target genes.

    Parameters
    ----------
    adata
        The training AnnData.
    perturbations
        The model's perturbation names.
    pathways
        Pathway -> genes; default ``adata.uns["pathways"]`` (the Replogle file's 8 complexes).
    perturbation_key
        obs column of the perturbation labels (Replogle: ``"sgID_AB"``).
    target_key
        obs column of each cell's target gene (Replogle: ``"gene"``); ``None`` when the perturbation names
        are the target genes themselves (e.g. Norman's ``perturbation_name`` singles).

    Returns
    -------
    Pathway -> perturbations targeting one of its genes; pathways without such a perturbation are left out.

    Examples
    --------
    >>> obs = pd.DataFrame({"sgID_AB": ["g1a", "g1b", "g2a", "nt"], "gene": ["G1", "G1", "G2", "non-targeting"]},
    ...                    index=["c0", "c1", "c2", "c3"])
    >>> groups_from_pathways(AnnData(obs=obs), ["g1a", "g1b", "g2a"], pathways={"EXOSOME": ["G1", "G9"]})
    {'EXOSOME': ['g1a', 'g1b']}
    """
    if pathways is None:
        if "pathways" not in adata.uns:
            raise ValueError("adata.uns has no 'pathways' (complex -> genes); pass them as pathways={complex: "
                             "[genes]}, or give the grouping directly (groups=..., --groups FILE).")
        pathways = adata.uns["pathways"]
    targets = _targets(adata, [str(p) for p in perturbations], perturbation_key, target_key)
    groups = {}
    for name, genes in pathways.items():
        genes = set(_names(genes))
        members = [p for p, target in targets.items() if target & genes]
        if members:
            groups[str(name)] = members
    return groups


def _targets(adata: AnnData, perturbations: list[str], perturbation_key: str | None,
             target_key: str | None) -> dict[str, set[str]]:
    """Target gene(s) of each perturbation."""
    if target_key is None:
        return {p: {p} for p in perturbations}
    if perturbation_key is None:
        raise ValueError("the perturbations were not registered from an obs column of labels, so their targets "
                         "cannot be looked up; use target_key=None (--target-key none) if their names are the genes.")
    for option, key in (("perturbation_key", perturbation_key), ("target_key", target_key)):
        if key not in adata.obs:
            raise ValueError(f"{option}={key!r} is not an obs column; obs columns: {format_names(list(adata.obs))}.")
    pairs = adata.obs[[perturbation_key, target_key]].astype(str).drop_duplicates()
    found = pairs.groupby(perturbation_key)[target_key].agg(set).to_dict()
    return {p: found.get(p, set()) for p in perturbations}


# ---------------------------------------------------------------- the score


def grouping_score(similarity: pd.DataFrame, groups: Mapping[str, Iterable[str]], *, n_clusters: int | None = None,
                   n_permutations: int = 1000, seed: int = 0) -> GroupingScore:
    """AUROC of same-group pairs and ARI of the clustering, each against a label-permutation null.

    Parameters
    ----------
    similarity
        Perturbation similarity, e.g. :func:`~samsvae_pyro.interpret.perturbation_similarity`.
    groups
        Group name -> member perturbations (ungrouped perturbations are ignored).
    n_clusters
        Clusters for the ARI; default: the number of groups with members.
    n_permutations
        Label permutations of the null.
    seed
        Seed of the permutations.

    Returns
    -------
    :class:`GroupingScore`.

    Shapes
    ------
    similarity : (T, T).

    Examples
    --------
    >>> blocks = np.kron(np.eye(2), np.ones((2, 2)))
    >>> similarity = pd.DataFrame(blocks, index=list("ABCD"), columns=list("ABCD"))
    >>> score = grouping_score(similarity, {"x": ["A", "B"], "y": ["C", "D"]}, n_permutations=50)
    >>> score.table.loc[["auroc", "ari"], "observed"].tolist()
    [1.0, 1.0]
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations}.")
    labels = group_labels(groups, similarity.index).dropna()
    sub = similarity.loc[labels.index, labels.index]
    codes = pd.factorize(labels)[0]  # (n,)
    n_groups = int(codes.max()) + 1
    clusters = cluster_perturbations(sub, n_clusters=n_clusters or n_groups)["cluster"]
    rng = np.random.default_rng(seed)
    permuted = np.stack([rng.permutation(codes) for _ in range(n_permutations)])  # (P, n)
    auroc = _PairAUROC(sub.to_numpy(dtype=float), codes)
    ari = _AdjustedRand(clusters.to_numpy() - 1, codes)
    observed = {"auroc": auroc(codes[None])[0], "ari": ari(codes[None])[0]}
    null = pd.DataFrame({"auroc": auroc(permuted), "ari": ari(permuted)})
    table = pd.DataFrame({name: _against_null(observed[name], null[name].to_numpy()) for name in STATISTICS}).T
    return GroupingScore(table=table, null=null, clusters=clusters, n_groups=n_groups,
                         n_same_pairs=auroc.n_same, n_different_pairs=auroc.n_different)


def _against_null(observed: float, null: np.ndarray) -> dict[str, float]:
    mean, sd = float(null.mean()), float(null.std(ddof=1)) if len(null) > 1 else float("nan")
    z = (observed - mean) / sd if sd > 0 else float("nan")
    p_value = (1 + int((null >= observed - 1e-12).sum())) / (1 + len(null))
    return {"observed": float(observed), "null_mean": mean, "null_sd": sd, "z_score": z, "p_value": p_value}


class _PairAUROC:
    """AUROC of pair similarities, same-group pairs positive, for many labelings at once.

    AUROC = (R_same - P (P + 1) / 2) / (P Q) with R_same the rank sum (ties averaged) of the P same-group
    pairs among all P + Q pairs. Ranks do not depend on the labels, and P is the same for every
    permutation of them, so each labeling costs one product of a 0/1 matrix with the ranks.
    """

    def __init__(self, similarity: np.ndarray, codes: np.ndarray):
        self.rows, self.cols = np.triu_indices(len(codes), k=1)
        self.ranks = rankdata(similarity[self.rows, self.cols])  # (n_pairs,)
        sizes = np.bincount(codes)
        self.n_same = int((sizes * (sizes - 1) // 2).sum())
        self.n_different = len(self.ranks) - self.n_same

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        """codes : (P, n) labelings -> (P,) AUROCs."""
        out = np.empty(len(codes))
        step = max(1, _CHUNK // max(len(self.ranks), 1))
        for start in range(0, len(codes), step):
            block = codes[start:start + step]
            same = block[:, self.rows] == block[:, self.cols]  # (p, n_pairs)
            rank_sum = same @ self.ranks
            u_statistic = rank_sum - self.n_same * (self.n_same + 1) / 2
            out[start:start + step] = u_statistic / (self.n_same * self.n_different)
        return out


class _AdjustedRand:
    """Adjusted Rand index between a fixed clustering and many labelings with the same group sizes.

    ARI = (I - E) / ((A + B) / 2 - E), with I = sum over contingency cells of C(n_ij, 2), A and B the same
    over group and cluster sizes, and E = A B / C(n, 2). Only I changes with a permutation.
    """

    def __init__(self, clusters: np.ndarray, codes: np.ndarray):
        self.clusters, self.n_clusters = clusters, int(clusters.max()) + 1
        self.n_groups = int(codes.max()) + 1
        pairs = lambda counts: float((counts * (counts - 1) / 2).sum())  # noqa: E731
        a, b = pairs(np.bincount(codes)), pairs(np.bincount(clusters))
        self.expected = a * b / (len(codes) * (len(codes) - 1) / 2)
        self.denominator = (a + b) / 2 - self.expected

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        """codes : (P, n) labelings -> (P,) ARIs."""
        cells = self.n_groups * self.n_clusters
        index = codes * self.n_clusters + self.clusters + cells * np.arange(len(codes))[:, None]  # (P, n)
        table = np.bincount(index.ravel(), minlength=cells * len(codes)).reshape(len(codes), cells)
        agree = (table * (table - 1) / 2).sum(axis=1)  # (P,)
        return (agree - self.expected) / self.denominator if self.denominator > 0 else np.full(len(codes), np.nan)

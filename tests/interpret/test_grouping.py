"""Similarity, clustering and the grouping score on hand-made similarity matrices (no model)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from samsvae_pyro.interpret import (
    cluster_perturbations,
    group_labels,
    grouping_score,
    groups_from_pathways,
    perturbation_similarity,
    plot_grouping_null,
    plot_similarity_heatmap,
    read_groups,
)
from samsvae_pyro.interpret.grouping import _AdjustedRand, _PairAUROC

NAMES = [f"P{i:02d}" for i in range(12)]
GROUPS = {f"G{g}": NAMES[3 * g:3 * g + 3] for g in range(4)}  # 4 groups x 3


def block_similarity(names=NAMES, noise=0.0, seed=0) -> pd.DataFrame:
    """Similarity 0.9 within the 4 blocks of GROUPS, 0 across, plus symmetric noise."""
    codes = np.repeat(np.arange(4), 3)
    values = np.where(codes[:, None] == codes[None], 0.9, 0.0)
    jitter = np.random.default_rng(seed).normal(0, noise, values.shape)
    values = np.clip(values + (jitter + jitter.T) / 2, -1, 1)
    np.fill_diagonal(values, 1.0)
    return pd.DataFrame(values, index=names, columns=names)


def random_similarity(n=12, seed=0) -> pd.DataFrame:
    x = np.random.default_rng(seed).normal(size=(n, 6))
    return perturbation_similarity(pd.DataFrame(x, index=NAMES[:n]))


# ---------------------------------------------------------------- the score


def test_perfect_grouping_scores_one_and_beats_the_null():
    score = grouping_score(block_similarity(noise=0.05), GROUPS, n_permutations=500, seed=0)
    table = score.table
    assert table.loc["auroc", "observed"] == 1.0 and table.loc["ari", "observed"] == pytest.approx(1.0)
    assert abs(table.loc["auroc", "null_mean"] - 0.5) < 0.03 and abs(table.loc["ari", "null_mean"]) < 0.05
    assert (table["z_score"] > 4).all()
    assert (table["p_value"] == 1 / 501).all()  # no permutation reaches the observed value
    assert (score.n_groups, score.n_same_pairs, score.n_different_pairs) == (4, 12, 54)
    assert score.null.shape == (500, 2)


def test_random_similarity_scores_like_the_null():
    for seed in range(3):
        table = grouping_score(random_similarity(seed=seed), GROUPS, n_permutations=300, seed=seed).table
        assert (table["z_score"].abs() < 3).all(), table
        assert (table["p_value"] > 0.01).all()


def test_same_seed_same_null_and_different_seed_differs():
    similarity = random_similarity()
    a, b = (grouping_score(similarity, GROUPS, n_permutations=50, seed=1).null for _ in range(2))
    c = grouping_score(similarity, GROUPS, n_permutations=50, seed=2).null
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_vectorised_statistics_match_sklearn():
    rng = np.random.default_rng(0)
    similarity = random_similarity().to_numpy()
    codes = np.repeat(np.arange(4), 3)
    clusters = rng.integers(0, 3, size=12)
    labelings = np.stack([rng.permutation(codes) for _ in range(20)])
    auroc, ari = _PairAUROC(similarity, codes)(labelings), _AdjustedRand(clusters, codes)(labelings)
    rows, cols = np.triu_indices(12, k=1)
    for labels, a, r in zip(labelings, auroc, ari):
        assert a == pytest.approx(roc_auc_score(labels[rows] == labels[cols], similarity[rows, cols]))
        assert r == pytest.approx(adjusted_rand_score(labels, clusters))


def test_ungrouped_perturbations_are_ignored():
    names = NAMES + ["X1", "X2"]
    big = pd.DataFrame(np.random.default_rng(3).uniform(-1, 1, (14, 14)), index=names, columns=names)
    big = (big + big.T) / 2
    big.iloc[:12, :12] = block_similarity(noise=0.1).to_numpy()
    small = grouping_score(block_similarity(noise=0.1), GROUPS, n_permutations=100).table
    pd.testing.assert_frame_equal(grouping_score(big, GROUPS, n_permutations=100).table, small)


# ---------------------------------------------------------------- checking groupings


def test_group_labels_accept_arrays_and_leave_others_ungrouped():
    labels = group_labels({"a": np.array(["P00", "P01"]), "b": "P02"}, NAMES)
    assert labels[["P00", "P01", "P02"]].tolist() == ["a", "a", "b"] and labels.isna().sum() == 9


@pytest.mark.parametrize("groups, fragments", [
    ({"a": ["P00", "XYZ"], "b": ["P01"]}, ["'XYZ'", "does not know", "groups_from_pathways"]),
    ({"a": ["P00", "P01"], "b": ["P01", "P02"]}, ["'P01'", "at most one group"]),
    ({"a": ["P00", "P01"]}, ["1 non-empty group", "at least two groups"]),
    ({"a": ["P00"], "b": ["P01"]}, ["two or more members"]),
    (["P00", "P01"], ["must map group names"]),
])
def test_bad_groupings_are_named(groups, fragments):
    with pytest.raises(ValueError) as error:
        group_labels(groups, NAMES)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_read_groups_formats(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps({"x": ["A", "B"], "y": ["C"]}))
    (tmp_path / "g.tsv").write_text("group\tperturbation\nx\tA\nx\tB\ny\tC\n")
    for name in ("g.json", "g.tsv"):
        assert read_groups(tmp_path / name) == {"x": ["A", "B"], "y": ["C"]}
    (tmp_path / "bad.csv").write_text("name,group\nA,x\n")
    (tmp_path / "bad.json").write_text("{not json")
    for name, fragment in (("bad.csv", "'perturbation'"), ("bad.json", "not valid JSON"), ("g.txt", "does not exist")):
        with pytest.raises((ValueError, FileNotFoundError), match=fragment):
            read_groups(tmp_path / name)


def test_groups_from_pathways_through_target_genes():
    obs = pd.DataFrame({"sgID_AB": ["EXO1_a", "EXO1_b", "EXO2_a", "MED1_a", "nt_1"],
                        "gene": ["EXO1", "EXO1", "EXO2", "MED1", "non-targeting"]},
                       index=[f"c{i}" for i in range(5)])
    adata = AnnData(obs=obs)
    adata.uns["pathways"] = {"EXOSOME": np.array(["EXO1", "EXO2", "EXO3"]), "MEDIATOR": ["MED1"], "OTHER": ["ZZZ"]}
    perturbations = ["EXO1_a", "EXO1_b", "EXO2_a", "MED1_a"]
    assert groups_from_pathways(adata, perturbations) == {"EXOSOME": ["EXO1_a", "EXO1_b", "EXO2_a"],
                                                          "MEDIATOR": ["MED1_a"]}
    assert groups_from_pathways(adata, ["EXO1", "MED1"], target_key=None) == {"EXOSOME": ["EXO1"],
                                                                               "MEDIATOR": ["MED1"]}
    with pytest.raises(ValueError, match="'guide' is not an obs column"):
        groups_from_pathways(adata, perturbations, target_key="guide")
    del adata.uns["pathways"]
    with pytest.raises(ValueError, match="no 'pathways'"):
        groups_from_pathways(adata, perturbations)


# ---------------------------------------------------------------- similarity and clusters


def test_similarity_metrics():
    values = pd.DataFrame([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [-1.0, -2.0, 0.0], [0.0, 0.0, 0.0]], index=list("ABCD"))
    cosine = perturbation_similarity(values)
    assert cosine.loc["A", "B"] == pytest.approx(1) and cosine.loc["A", "C"] == pytest.approx(-1)
    assert cosine.loc["D", "A"] == 0 and cosine.loc["D", "D"] == 1  # a row without effect
    shifted = perturbation_similarity(values + 5, metric="correlation")
    assert shifted.loc["A", "B"] == pytest.approx(1) and shifted.loc["A", "C"] == pytest.approx(-1)
    with pytest.raises(ValueError, match="metric='euclid'"):
        perturbation_similarity(values, metric="euclid")


def test_clusters_follow_blocks_in_dendrogram_order():
    similarity = block_similarity(noise=0.05)
    for clusters in (cluster_perturbations(similarity, n_clusters=4), cluster_perturbations(similarity)):
        assert adjusted_rand_score(np.repeat(np.arange(4), 3), clusters["cluster"]) == 1.0
        ordered = clusters.sort_values("position")["cluster"].to_numpy()
        assert list(pd.unique(ordered)) == [1, 2, 3, 4] and sorted(clusters["position"]) == list(range(12))
    assert cluster_perturbations(similarity, min_similarity=-1.0)["cluster"].nunique() == 1
    with pytest.raises(ValueError, match="n_clusters=13"):
        cluster_perturbations(similarity, n_clusters=13)


def test_plots_write_png(tmp_path):
    similarity = block_similarity(noise=0.1)
    order = cluster_perturbations(similarity)["position"].to_numpy().argsort()
    labels = group_labels({"G0": NAMES[:3], "G1": NAMES[3:5]}, NAMES)  # partly grouped
    many = random_similarity(n=12).reindex(index=NAMES * 6, columns=NAMES * 6)  # 72 rows: no tick labels
    paths = [plot_similarity_heatmap(similarity, tmp_path / "a.png", order=order, groups=labels),
             plot_similarity_heatmap(many, tmp_path / "b.png"),
             plot_grouping_null(grouping_score(similarity, GROUPS, n_permutations=20), tmp_path / "c.png")]
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5000

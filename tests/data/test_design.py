"""build_perturbation_data on good input: sources, encodings, statistics, reference re-use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from samsvae_pyro.data import build_perturbation_data
from samsvae_pyro.data.design import STD_FLOOR

NT = {"perturbation_key": "perturbation", "control_label": "non-targeting", "split_key": "split"}


def test_sum_design_of_simulation(sim_counts):
    data = build_perturbation_data(sim_counts, **NT)
    truth_conditions = list(sim_counts.uns["sams_truth"]["true_ate_conditions"])
    assert data.vocabulary.perturbations == ("P0", "P1", "P2", "P3")
    assert data.conditions() == sorted(truth_conditions)
    double = truth_conditions[-1]
    rows = data.dosages[np.flatnonzero(data.labels == double)].toarray()
    expected = [float(p in double.split("+")) for p in data.vocabulary.perturbations]
    assert (rows == expected).all()
    np.testing.assert_array_equal(
        data.control_mask, sim_counts.obs["perturbation"] == "non-targeting"
    )
    np.testing.assert_array_equal(data.split, sim_counts.obs["split"].astype(str))


def test_counts_are_shared_not_copied(sim_counts):
    data = build_perturbation_data(sim_counts, **NT)
    assert isinstance(data.counts, sp.csr_matrix) and data.counts.dtype == np.float32
    assert np.shares_memory(data.counts.data, sim_counts.X.data)
    np.testing.assert_allclose(data.library_size, np.asarray(sim_counts.X.sum(axis=1)).ravel())


def test_statistics_are_training_log1p_moments(sim_counts):
    data = build_perturbation_data(sim_counts, **NT)
    train = np.log1p(sim_counts.X.toarray()[data.indices("train")])
    np.testing.assert_allclose(data.x_mean, train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(data.x_std, np.maximum(train.std(axis=0), STD_FLOOR), rtol=1e-4)
    assert data.x_transform == "log1p"


def test_dense_and_sparse_inputs_agree(make_adata):
    labels = ["control", "A", "B", "A+B"] * 5
    sparse = build_perturbation_data(
        make_adata(labels), perturbation_key="perturbation", split_seed=1
    )
    dense = build_perturbation_data(
        make_adata(labels, sparse=False), perturbation_key="perturbation", split_seed=1
    )
    assert isinstance(dense.counts, np.ndarray)
    np.testing.assert_array_equal(dense.counts, sparse.counts.toarray())
    np.testing.assert_allclose(dense.x_mean, sparse.x_mean, rtol=1e-6)
    np.testing.assert_allclose(dense.x_std, sparse.x_std, rtol=1e-6)


def test_integer_csr_converted_keeping_indices(make_adata):
    adata = make_adata(["control", "A"] * 10)
    adata.X = adata.X.astype(np.int64)
    data = build_perturbation_data(adata, perturbation_key="perturbation")
    assert data.counts.dtype == np.float32
    assert np.shares_memory(data.counts.indices, adata.X.indices)


def test_unique_encoding(labelled_adata):
    data = build_perturbation_data(
        labelled_adata, perturbation_key="perturbation", split_key="split", encoding="unique"
    )
    assert data.vocabulary.perturbations == ("A", "A+B", "B", "C")
    np.testing.assert_array_equal(data.condition_dosages(["B+A"]), [[0, 1, 0, 0]])
    assert data.labels[6] == "A+B"  # "B+A" gets its canonical label


def test_split_queries(labelled_adata):
    data = build_perturbation_data(
        labelled_adata, perturbation_key="perturbation", split_key="split"
    )
    np.testing.assert_array_equal(data.indices("train"), [0, 1, 2, 3, 5])
    assert data.indices("train").dtype == np.int64
    np.testing.assert_array_equal(data.cells_per_perturbation("train"), [2, 2, 1])  # A, B, C
    assert data.conditions("test") == ["A+B"]
    summary = data.summary()
    assert list(summary.index) == ["train", "val", "test"]
    assert summary.loc["val", "n_control_cells"] == 1
    assert summary.loc["train", "conditions"] == ["A", "A+B", "B", "C"]
    with pytest.raises(ValueError, match="'excluded' split is empty"):
        data.indices("excluded")


def test_dosage_columns_match_label_column(make_adata):
    labels = ["control", "A", "B", "A+B", "C+A"] * 4
    adata = make_adata(labels)
    for gene in "ABC":
        adata.obs[f"guide_{gene}"] = [int(gene in lab) for lab in labels]
    adata.obs["guide_identity"] = "some string"  # skipped by the prefix rule
    from_columns = build_perturbation_data(adata, dosage_columns="guide_", split_seed=2)
    from_labels = build_perturbation_data(adata, perturbation_key="perturbation", split_seed=2)
    assert (
        from_columns.vocabulary.perturbations
        == from_labels.vocabulary.perturbations
        == ("A", "B", "C")
    )
    assert (from_columns.dosages != from_labels.dosages).nnz == 0
    np.testing.assert_array_equal(from_columns.labels, from_labels.labels)
    explicit = build_perturbation_data(
        adata, dosage_columns=["guide_A", "guide_B", "guide_C"], split_seed=2
    )
    assert explicit.vocabulary.perturbations == ("guide_A", "guide_B", "guide_C")


def test_control_pattern_takes_labels_whole(make_adata):
    labels = ["A_+_1|A_-_2", "A_+_1|A_-_2", "non-targeting_00|non-targeting_01", "B_+_7|B_-_8"] * 5
    data = build_perturbation_data(
        make_adata(labels),
        perturbation_key="perturbation",
        control_pattern="non-targeting",
        split_seed=0,
    )
    assert data.vocabulary.perturbations == ("A_+_1|A_-_2", "B_+_7|B_-_8")
    assert data.control_mask.sum() == 5
    assert set(data.labels[data.control_mask]) == {"control"}


def test_reference_reapplies_vocabulary_and_reorders_genes(sim_counts):
    train = build_perturbation_data(sim_counts, **NT)
    new = sim_counts[::3, ::-1].copy()  # fewer cells, genes reversed
    new.obs["split"] = "test"
    data = build_perturbation_data(new, **NT, reference=train)
    assert data.vocabulary is train.vocabulary
    assert data.var_names.equals(train.var_names)
    np.testing.assert_array_equal(data.counts.toarray(), train.counts[::3].toarray())
    assert (data.dosages != train.dosages[::3]).nnz == 0
    np.testing.assert_array_equal(data.x_mean, train.x_mean)


def test_reference_allows_data_without_controls(sim_counts, make_adata):
    train = build_perturbation_data(sim_counts, **NT)
    counts = np.ones((2, sim_counts.n_vars), dtype=np.float32)
    new = make_adata(["P1", "P0+P3"], counts=counts, split=["test", "test"])
    new.var_names = sim_counts.var_names
    data = build_perturbation_data(
        new, perturbation_key="perturbation", split_key="split", reference=train
    )
    np.testing.assert_array_equal(data.dosages.toarray(), [[0, 1, 0, 0], [1, 0, 0, 1]])


def test_excluded_cells_may_have_unseen_conditions(make_adata):
    labels = ["control", "A", "B", "A+B", "control", "Z"]
    split = ["train", "train", "train", "train", "val", "excluded"]
    data = build_perturbation_data(
        make_adata(labels, split=split), perturbation_key="perturbation", split_key="split"
    )
    assert data.labels[5] == "Z"
    assert data.dosages[5].nnz == 0


def test_continuous_data_uses_identity_statistics(make_adata):
    values = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    adata = make_adata(["control", "A"] * 10, counts=values, sparse=False)
    data = build_perturbation_data(adata, perturbation_key="perturbation", count_data=False)
    train = values[data.indices("train")]
    assert data.x_transform == "identity"
    np.testing.assert_allclose(data.x_mean, train.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_user_anndata_is_not_modified(sim_counts):
    before_obs = sim_counts.obs.copy()
    before_x = sim_counts.X.copy()
    build_perturbation_data(sim_counts, **NT, encoding="unique")
    pd.testing.assert_frame_equal(sim_counts.obs, before_obs)
    assert (sim_counts.X != before_x).nnz == 0

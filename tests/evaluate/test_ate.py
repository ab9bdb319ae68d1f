"""Data ATE against a direct dense computation, and the ATE container."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from samsvae_pyro.evaluate import (
    ate_anndata,
    ate_transform,
    condition_split_flags,
    data_ate,
    perturbseq_transform,
)


def dense_ate(data, method: str, cells: np.ndarray) -> dict[str, np.ndarray]:
    """The ATE computed the obvious way on the dense matrix."""
    x = data.counts.toarray().astype(float)[cells]
    if method == "perturbseq":
        library = x.sum(axis=1, keepdims=True)
        x = np.log2(1 + 1e4 * x / np.where(library > 0, library, 1))
    labels = np.asarray(data.labels)[cells]
    control = x[labels == "control"].mean(axis=0)
    return {label: x[labels == label].mean(axis=0) - control for label in set(labels) - {"control"}}


def test_perturbseq_transform_agrees_across_array_kinds():
    x = np.array([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]])
    expected = np.log2(1 + 1e4 * x / np.maximum(x.sum(axis=1, keepdims=True), 1))
    np.testing.assert_allclose(perturbseq_transform(x), expected)
    np.testing.assert_allclose(perturbseq_transform(sp.csr_matrix(x)).toarray(), expected)
    np.testing.assert_allclose(perturbseq_transform(torch.tensor(x)).numpy(), expected)
    particles = torch.tensor(np.stack([x, 2 * x]))  # (S, B, G): f is invariant to scaling a row
    np.testing.assert_allclose(perturbseq_transform(particles).numpy(), np.stack([expected, expected]))
    assert perturbseq_transform(x)[1].sum() == 0  # empty cell maps to zero, not NaN


def test_ate_transform_per_method():
    x = np.array([[1.0, 3.0]])
    assert ate_transform("mean")(x) is x
    np.testing.assert_allclose(ate_transform("perturbseq")(x), perturbseq_transform(x))
    with pytest.raises(ValueError, match="'perturbseq' or 'mean'"):
        ate_transform("log")


@pytest.mark.parametrize("method", ["perturbseq", "mean"])
def test_data_ate_matches_dense_computation(tiny_data, method):
    ate = data_ate(tiny_data, method=method, chunk_size=5)
    kept = np.flatnonzero(tiny_data.split != "excluded")
    expected = dense_ate(tiny_data, method, kept)
    assert list(ate.obs_names) == sorted(expected)
    np.testing.assert_allclose(ate.X, np.stack([expected[c] for c in ate.obs_names]), atol=1e-10)
    assert list(ate.var_names) == list(tiny_data.var_names)
    assert ate.obs.loc["A+C", "n_cells"] == 2 and ate.obs.loc["A", "n_cells"] == 4


def test_data_ate_chunking_does_not_change_the_result(tiny_data):
    np.testing.assert_allclose(data_ate(tiny_data, chunk_size=1).X, data_ate(tiny_data, chunk_size=10_000).X)


def test_data_ate_split_flags_and_cell_subsets(tiny_data):
    train = data_ate(tiny_data, cells=tiny_data.indices("train"))
    assert "A+C" not in train.obs_names and "D" not in train.obs_names
    assert train.obs.loc["A+B", "n_cells"] == 2
    expected = dense_ate(tiny_data, "perturbseq", tiny_data.indices("train"))
    np.testing.assert_allclose(train.X, np.stack([expected[c] for c in train.obs_names]))
    flags = data_ate(tiny_data).obs
    assert flags.loc["A+B", ["in_train", "in_val", "in_test"]].tolist() == [True, False, True]
    assert flags.loc["B", ["in_train", "in_val", "in_test"]].tolist() == [True, True, False]
    assert flags.loc["A+C", ["in_train", "in_val", "in_test"]].tolist() == [False, False, True]
    flags = condition_split_flags(tiny_data, ["A+C", "never seen"])
    assert flags["in_test"].tolist() == [True, False] and not flags["in_train"].any()
    mask = tiny_data.split == "train"
    np.testing.assert_allclose(data_ate(tiny_data, cells=mask).X, train.X)


def test_data_ate_ignores_excluded_cells_by_default(make_data):
    counts = np.array([[1, 1], [1, 3], [5, 1], [9, 0], [0, 9]])
    labels, splits = ["control", "control", "A", "A", "A"], ["train"] * 4 + ["excluded"]
    data = make_data(counts, labels, splits)
    ate = data_ate(data, method="mean")
    np.testing.assert_allclose(ate.X, [[6.0, -1.5]])
    everything = data_ate(data, method="mean", cells=np.arange(5))
    np.testing.assert_allclose(everything.X, [[(5 + 9 + 0) / 3 - 1, (1 + 0 + 9) / 3 - 2]])


def test_data_ate_rejects_bad_inputs(tiny_data):
    with pytest.raises(ValueError, match="method"):
        data_ate(tiny_data, method="median")
    with pytest.raises(ValueError, match="control cells"):
        data_ate(tiny_data, cells=np.flatnonzero(tiny_data.labels == "A"))
    with pytest.raises(ValueError, match="row positions"):
        data_ate(tiny_data, cells=np.array([0, 10_000]))


def test_ate_anndata_shape_and_checks():
    lower = {"lower": np.zeros((2, 3))}
    ate = ate_anndata(np.ones((2, 3)), ["A", "B"], ["x", "y", "z"], layers=lower, obs={"n_cells": [3, 4]})
    assert ate.shape == (2, 3) and ate.obs["n_cells"].tolist() == [3, 4]
    assert ate.layers["lower"].sum() == 0
    with pytest.raises(ValueError, match="one row per condition"):
        ate_anndata(np.ones((3, 3)), ["A", "B"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="duplicates"):
        ate_anndata(np.ones((2, 3)), ["A", "A"], ["x", "y", "z"])

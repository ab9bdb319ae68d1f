"""Tiny hand-built designs for the evaluation tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from samsvae_pyro.data import PerturbationData, build_perturbation_data
from samsvae_pyro.evaluate import ate_anndata


def _make_data(
    counts: np.ndarray,
    labels: Sequence[str],
    splits: Sequence[str],
    *,
    var_names: Sequence[str] | None = None,
    count_data: bool = True,
) -> PerturbationData:
    """PerturbationData of a dense count matrix stored sparse, with "control" as control label."""
    obs = pd.DataFrame(
        {"perturbation": list(labels), "split": list(splits)}, index=[f"cell{i}" for i in range(len(labels))]
    )
    genes = list(var_names) if var_names is not None else [f"gene{j}" for j in range(counts.shape[1])]
    var = pd.DataFrame(index=genes)
    adata = AnnData(X=sp.csr_matrix(np.asarray(counts, dtype=np.float32)), obs=obs, var=var)
    return build_perturbation_data(
        adata,
        perturbation_key="perturbation",
        control_label="control",
        split_key="split",
        count_data=count_data,
    )


@pytest.fixture
def make_data():
    """Factory (counts, labels, splits, *, var_names=None, count_data=True) -> PerturbationData."""
    return _make_data


@pytest.fixture
def tiny_data() -> PerturbationData:
    """Controls; singles A, B, C (train), D (test only); pairs A+B (train, test), A+C (test), A+D (train)."""
    rng = np.random.default_rng(0)
    design = [
        ("control", ["train"] * 4 + ["val", "test"]),
        ("A", ["train"] * 3 + ["test"]),
        ("B", ["train"] * 3 + ["val"]),
        ("C", ["train"] * 3),
        ("A+B", ["train", "train", "test", "test"]),
        ("A+C", ["test", "test"]),
        ("A+D", ["train", "train"]),
        ("D", ["test", "test"]),
    ]
    labels = [label for label, splits in design for _ in splits]
    splits = [split for _, splits in design for split in splits]
    counts = rng.poisson(5.0, size=(len(labels), 4)).astype(float)
    return _make_data(counts, labels, splits)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def random_ate():
    """Factory (rng, n_conditions=6, n_genes=30, *, splits=True) -> random ATE AnnData."""
    return _random_ate


def _random_ate(rng: np.random.Generator, n_conditions: int = 6, n_genes: int = 30, *, splits: bool = True):
    """ATE AnnData with random effects; conditions c0..; the first half train, the rest test."""
    conditions = [f"c{i}" for i in range(n_conditions)]
    half = np.arange(n_conditions) < n_conditions // 2
    obs = {"in_train": half, "in_val": np.zeros(n_conditions, bool), "in_test": ~half} if splits else None
    genes = [f"g{j}" for j in range(n_genes)]
    return ate_anndata(rng.normal(size=(n_conditions, n_genes)), conditions, genes, obs=obs)

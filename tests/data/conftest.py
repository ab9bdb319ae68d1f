"""Shared tiny inputs for the data-layer tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

from samsvae_pyro.data import simulate_counts

SEED = 0


@pytest.fixture(scope="session")
def sim_counts() -> AnnData:
    """Simulated NB counts: 4 singles, 2 doubles, 30 cells each, "non-targeting" controls.

    Session-scoped: tests that need to modify it must work on ``sim_counts.copy()``.
    """
    return simulate_counts(n_perturbations=4, cells_per_perturbation=30, n_double=2, seed=SEED)


def _make_adata(
    labels: Sequence[str],
    *,
    counts: np.ndarray | None = None,
    split: Sequence[str] | None = None,
    n_genes: int = 5,
    sparse: bool = True,
    seed: int = SEED,
) -> AnnData:
    """AnnData with obs["perturbation"] (and obs["split"] if given); Poisson counts by default."""
    if counts is None:
        counts = np.random.default_rng(seed).poisson(3.0, size=(len(labels), n_genes))
    counts = np.asarray(counts, dtype=np.float32)
    obs = pd.DataFrame({"perturbation": list(labels)}, index=[f"c{i}" for i in range(len(labels))])
    if split is not None:
        obs["split"] = list(split)
    var = pd.DataFrame(index=[f"g{j}" for j in range(counts.shape[1])])
    return AnnData(X=sp.csr_matrix(counts) if sparse else counts, obs=obs, var=var)


@pytest.fixture
def make_adata():
    """Factory (labels, *, counts=None, split=None, n_genes=5, sparse=True, seed=0) -> AnnData."""
    return _make_adata


@pytest.fixture
def labelled_adata() -> AnnData:
    """Eight cells: controls, singles A/B/C and combinations, all in explicit splits."""
    labels = ["control", "A", "B", "A+B", "control", "C", "B+A", "A"]
    split = ["train", "train", "train", "train", "val", "train", "test", "val"]
    return _make_adata(labels, split=split)

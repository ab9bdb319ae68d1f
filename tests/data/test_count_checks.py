"""Counts are checked for the likelihood at registration (issue 17, items 6, 8 and 9)."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from samsvae_pyro import SAMSVAE
from samsvae_pyro.data import build_perturbation_data

LABELS = ["control", "A", "B", "A+B"] * 3
SETUP = dict(perturbation_key="perturbation")


def _named_options(message: str) -> set[str]:
    return set(re.findall(r"\b([a-z_]+)=", message))


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("kind", ["log-normalised", "negative"])
def test_setup_anndata_rejects_non_counts_and_every_hint_is_a_real_option(make_adata, sparse, kind):
    counts = np.random.default_rng(0).poisson(3.0, size=(len(LABELS), 5)).astype(np.float32)
    counts = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4) if kind == "log-normalised" else counts - 1
    adata = make_adata(LABELS, counts=counts, sparse=sparse)
    with pytest.raises(ValueError) as info:
        SAMSVAE.setup_anndata(adata, **SETUP)
    assert "_samsvae_setup" not in adata.uns
    options = _named_options(str(info.value))
    real = set(inspect.signature(SAMSVAE.setup_anndata).parameters) | set(inspect.signature(SAMSVAE).parameters)
    assert {"count_data", "likelihood", "layer"} <= options and options <= real


def test_continuous_values_register_with_count_data_false_and_need_the_normal_likelihood(make_adata):
    adata = make_adata(LABELS, counts=np.random.default_rng(0).normal(size=(len(LABELS), 5)))
    SAMSVAE.setup_anndata(adata, **SETUP, count_data=False)
    with pytest.raises(ValueError, match=r"count_data=False.*likelihood='normal'"):
        SAMSVAE(adata, n_latent=2, n_hidden=4, device="cpu")
    assert SAMSVAE(adata, n_latent=2, n_hidden=4, likelihood="normal", device="cpu").data.x_transform == "identity"


def test_float16_counts_are_rejected_when_they_may_have_been_rounded(make_adata):
    counts = np.ones((len(LABELS), 3), dtype=np.float32)
    counts[1, 2] = 5913  # float16 stores it as 5912 (scipy.sparse has no float16: dense only)
    adata = make_adata(LABELS, counts=counts, sparse=False)
    adata.X = adata.X.astype(np.float16)
    with pytest.raises(ValueError, match=r"float16.*2,048.*5912"):
        build_perturbation_data(adata, **SETUP)


def test_float16_counts_below_2048_are_exact_and_accepted(make_adata):
    counts = np.full((len(LABELS), 3), 2047, dtype=np.float32)
    adata = make_adata(LABELS, counts=counts, sparse=False)
    adata.X = adata.X.astype(np.float16)
    data = build_perturbation_data(adata, **SETUP)
    assert data.counts.dtype == np.float32 and (data.counts == 2047).all()
    assert build_perturbation_data(adata, **SETUP, count_data=False).n_cells == len(LABELS)


@pytest.mark.parametrize("sparse", [True, False])
def test_counts_above_2_to_the_24_are_rejected(make_adata, sparse):
    counts = np.ones((len(LABELS), 2), dtype=np.float32)
    counts[3, 0] = 1e12  # finite and an integer in float32, but no count can be that large
    adata = make_adata(LABELS, counts=counts, sparse=sparse)
    with pytest.raises(ValueError, match=r"above 2\^24"):
        build_perturbation_data(adata, **SETUP)
    counts[3, 0] = 2**24
    assert build_perturbation_data(make_adata(LABELS, counts=counts, sparse=sparse), **SETUP).n_cells == len(LABELS)


def test_the_users_float16_matrix_is_never_modified(make_adata):
    adata = make_adata(LABELS, sparse=False)
    adata.X = adata.X.astype(np.float16)
    before = adata.X.copy()
    build_perturbation_data(adata, **SETUP)
    assert adata.X.dtype == np.float16 and np.array_equal(adata.X, before)

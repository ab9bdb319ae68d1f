import pytest
import torch


def make_batch(B=16, G=12, T=5, n_cells=40, seed=0):
    """A hand-made batch with one perturbation (or none) per cell."""
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(B, G, generator=g) * 6)
    D = torch.zeros(B, T)
    which = torch.randint(-1, T, (B,), generator=g)
    D[which >= 0, which[which >= 0]] = 1.0
    return {"x": x, "D": D, "library": x.sum(-1).clamp_min(1), "index": torch.arange(B), "n_cells": n_cells}


@pytest.fixture
def batch():
    return make_batch()


@pytest.fixture(scope="session")
def tiny_adata():
    """A small count simulation: 4 perturbations + controls, 20 genes, with a double perturbation."""
    from samsvae_pyro.data import simulate_counts

    return simulate_counts(n_latent=3, n_perturbations=4, n_genes=20, cells_per_perturbation=40,
                           n_double=1, seed=0)


@pytest.fixture
def registered(tiny_adata):
    from samsvae_pyro import SAMSVAE

    adata = tiny_adata.copy()
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return adata


def small_model(adata, **kwargs):
    from samsvae_pyro import SAMSVAE

    options = dict(n_latent=3, n_hidden=16, mask_prior_prob=0.2, device="cpu") | kwargs
    return SAMSVAE(adata, **options)

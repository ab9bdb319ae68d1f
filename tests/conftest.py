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

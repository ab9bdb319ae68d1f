"""ArviZ export (optional extra): groups, shapes and coordinates; skipped when ArviZ is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.evaluate.criticism import to_inference_data
from tests.evaluate.criticism.test_check import build

az = pytest.importorskip("arviz", reason="ArviZ is an optional extra: pip install 'samsvae-pyro[arviz]'")


def test_export_holds_globals_replicates_and_observations():
    model, guide, data = build()
    cells = data.indices("test")[:7]
    idata = to_inference_data(model, guide, data, cells, n_samples=4, mode="generative")
    assert set(idata.groups()) >= {"posterior", "posterior_predictive", "observed_data"}
    assert idata.posterior["E"].shape == (1, 4, data.n_perturbations, model.n_latent)
    assert idata.posterior_predictive["x"].shape == (1, 4, 7, data.n_genes)
    assert np.array_equal(idata.observed_data["x"].values, data.counts[cells].toarray())
    assert list(idata.observed_data["x"].coords["cell"].values) == list(data.obs_names[cells])
    assert (idata.posterior_predictive["x"].values >= 0).all()

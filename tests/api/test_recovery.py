"""Statistical recovery at CI size (issue 3): the mask posterior separates true from false entries.

Count simulation: K = 8, T = 12, 60 genes, 200 cells per perturbation plus 200 controls. The AUROC of
q(m = 1) after Hungarian matching of latent dims must reach 0.85 for both guides (a random posterior
scores about 0.73 under that matching, 99th percentile 0.83), and the held-out IWELBO must beat a
model whose perturbation labels were shuffled (no usable perturbation effects).
"""

import numpy as np
import pytest

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.evaluate import mask_recovery

STEPS, PRIOR = 1000, 0.1
LR = {"correlated": 1e-2, "mean_field": 3e-3}  # measured AUROC at seed 0: 0.865 and 0.858
pytestmark = pytest.mark.slow


def fit(adata, guide="correlated"):
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    model = SAMSVAE(adata, n_latent=8, n_hidden=64, guide=guide, mask_prior_prob=PRIOR, device="cpu")
    model.train(max_steps=STEPS, batch_size=128, lr=LR[guide], val_every=250, progress=False)
    return model


@pytest.fixture(scope="module")
def simulation():
    return simulate_counts(seed=0)


@pytest.fixture(scope="module")
def shuffled_iwelbo(simulation):
    adata = simulation.copy()
    adata.obs["perturbation"] = np.random.default_rng(0).permutation(adata.obs["perturbation"].to_numpy())
    return fit(adata).iwelbo(n_particles=20).mean()


@pytest.mark.parametrize("guide", ["correlated", "mean_field"])
def test_mask_posterior_separates_true_from_false_entries(simulation, shuffled_iwelbo, guide):
    model = fit(simulation.copy(), guide)
    scores = mask_recovery(np.asarray(simulation.uns["sams_truth"]["mask"]), model.mask_probabilities().to_numpy())
    assert scores["auroc"] >= 0.85
    assert model.iwelbo(n_particles=20).mean() > shuffled_iwelbo + 0.5

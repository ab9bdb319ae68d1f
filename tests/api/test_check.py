"""model.check on count simulations with known truth: each kind of misspecification is caught, the correct model passes.

CI-size version of ``benchmarks/ppc_misspecification.py`` (its simulation, one seed, 800 steps instead of 1,500). The simulation is negative binomial (inverse dispersion about 5); every run is checked on the
same held-out test cells with their true labels, 20 replicates, p < 0.01.

Measured at this size (seeds 0 / 1 / 2, fraction of units flagged): gene variance, NB 0.05 / 0.03 / 0.08 vs Poisson
0.68 / 0.73 / 0.67; gene zero fraction, NB 0.05 / 0.05 / 0.02 vs Poisson 0.38 / 0.62 / 0.60; generative condition
shift, NB 0.035 / 0.027 / 0.023 vs shuffled labels 0.32 / 0.20 / 0.26; in-sample gene mean, NB 0.05 / 0.17 / 0.12
vs 10 steps 0.42 / 0.42 / 0.78. The in-sample mean check flags some genes of the correct model too (the means of
450 cells are precise enough to show small decoder biases), so the under-trained model is compared against it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samsvae_pyro import SAMSVAE, simulate_counts

STEPS, FEW_STEPS = 800, 10


def simulation(seed: int = 0):
    adata = simulate_counts(n_perturbations=10, cells_per_perturbation=150, n_double=4, seed=seed)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return adata


def flagged_fractions(seed: int = 0) -> dict:
    """{run: check summary} for the correct NB model, a Poisson model, NB on shuffled labels, NB after 10 steps."""
    torch.set_num_threads(1)
    adata = simulation(seed)
    test = adata[adata.obs["split"] == "test"].copy()
    shuffled = adata.copy()
    shuffled.obs["perturbation"] = np.random.default_rng(seed).permutation(shuffled.obs["perturbation"].to_numpy())
    runs = {"nb": (adata, "nb", STEPS), "poisson": (adata, "poisson", STEPS), "shuffled": (shuffled, "nb", STEPS),
            "few_steps": (adata, "nb", FEW_STEPS)}
    out = {}
    for name, (data, likelihood, steps) in runs.items():
        model = SAMSVAE(data, n_latent=8, n_hidden=64, likelihood=likelihood, mask_prior_prob=0.1, device="cpu",
                        guide_kwargs={"embedding_hidden": 64})
        model.train(max_steps=steps, batch_size=256, lr=1e-2, val_every=steps, progress=False)
        out[name] = model.check(test, n_samples=20).summary()["flagged"]
    return out


@pytest.fixture(scope="module")
def flagged():
    return flagged_fractions()


@pytest.mark.slow
def test_poisson_fit_to_overdispersed_counts_is_flagged(flagged):
    for name in ("variance", "zero_fraction"):
        key = ("in_sample", "gene", name)
        assert flagged["nb"][key] <= 0.1 and flagged["poisson"][key] >= 0.3, (name, flagged["nb"][key],
                                                                               flagged["poisson"][key])


@pytest.mark.slow
def test_shuffled_labels_are_flagged_by_the_generative_shift_check(flagged):
    key = ("generative", "condition", "shift")
    assert flagged["nb"][key] <= 0.05 and flagged["shuffled"][key] >= max(0.1, 3 * flagged["nb"][key]), (
        flagged["nb"][key], flagged["shuffled"][key])


@pytest.mark.slow
def test_undertrained_model_is_flagged(flagged):
    key = ("in_sample", "gene", "mean")
    assert flagged["few_steps"][key] >= max(0.25, 2 * flagged["nb"][key]), (flagged["nb"][key],
                                                                            flagged["few_steps"][key])

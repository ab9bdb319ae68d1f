"""Statistical acceptance at CI size (issues 3, 4 and 7), with fixed seeds and thresholds below the measurements.

Data: the demo's count simulation (``runs.demo_data(seed=0)``): K = 8, 12 perturbations, 6 pairs of which
2 are only in the test split, 60 genes, 200 cells per condition plus controls, with the true mask and a
Monte-Carlo true ATE. Model: the demo's recipe (correlated guide with the offset-subtracting encoder,
lr 3e-3, 5 particles, 1,500 steps). Measured at seed 0 with one thread: ATE Pearson vs the data ATE of
held-out cells 0.913 (all cells 0.944), held-out pairs 0.909 vs 0.884 for the additive baseline, 90% interval
coverage of the true ATE 0.789. Training runs on one thread so that the numbers do not depend on the
machine's thread count.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.runs import demo_data, evaluate_run
from samsvae_pyro.evaluate import mask_recovery
from samsvae_pyro.evaluate.ate import data_ate
from samsvae_pyro.evaluate.metrics import pearson

pytestmark = pytest.mark.slow
RECIPE = dict(max_steps=1500, batch_size=256, lr=3e-3, n_particles=5, val_every=300, progress=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fit(adata, guide="correlated", guide_kwargs=None, **train):
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    guide_kwargs = ({"embedding_hidden": 128} if guide == "correlated" else {}) | (guide_kwargs or {})
    model = SAMSVAE(adata, n_latent=8, n_hidden=128, mask_prior_prob=0.1, guide=guide, guide_kwargs=guide_kwargs,
                    device="cpu")
    model.train(**(RECIPE | train))
    return model


@pytest.fixture(scope="module")
def simulation():
    return demo_data(seed=0)[0]


@pytest.fixture(scope="module")
def model(simulation):
    return fit(simulation.copy())


@pytest.fixture(scope="module")
def report(model, simulation, tmp_path_factory):
    return evaluate_run(model, tmp_path_factory.mktemp("report"), truth=simulation.uns["sams_truth"], n_particles=50,
                          plots=False)


def test_model_ate_matches_the_data_ate_of_held_out_cells(model):
    held_out = data_ate(model.data, cells=np.concatenate([model.data.indices("test"),
                                                          np.flatnonzero(model.data.control_mask)]))
    predicted = model.model_ate(list(held_out.obs_names))
    assert pearson(np.asarray(predicted.X), np.asarray(held_out.X)) >= 0.9


def test_model_beats_the_control_and_training_mean_baselines_on_every_ate_metric(report):
    higher, lower = ("pearson", "pearson_top20", "r2", "r2_top20", "delta_pearson"), ("mse_top20", "rank")
    ours = report["ate"]["model"]["all"]
    for baseline in ("control_mean", "training_mean"):
        theirs = report["ate"][baseline]["all"]
        for metric in higher:
            assert theirs[metric] is None or ours[metric] > theirs[metric], (baseline, metric)
        for metric in lower:
            assert ours[metric] < theirs[metric], (baseline, metric)


def test_held_out_combinations_are_predicted_at_least_as_well_as_by_the_additive_baseline(report):
    ours, additive = report["ate"]["model"]["unseen"], report["ate"]["additive"]["unseen"]
    assert ours["n_conditions"] == 2
    assert ours["pearson"] >= additive["pearson"] and ours["pearson"] >= 0.85


def test_credible_intervals_cover_most_true_effects(report):
    coverage = report["truth"]["coverage"]["coverage"]  # measured 0.79 at seed 0 (target 0.75 to 0.99)
    assert 0.7 <= coverage <= 0.99


def test_iwelbo_beats_a_model_fitted_to_shuffled_labels(model, simulation):
    shuffled = simulation.copy()
    shuffled.obs["perturbation"] = np.random.default_rng(0).permutation(shuffled.obs["perturbation"].to_numpy())
    a, b = model.iwelbo(n_particles=20).mean(), fit(shuffled).iwelbo(n_particles=20).mean()
    assert a > b + 0.5


def test_mask_recovery_of_the_mean_field_recipe_stays_above_the_paper_recipe():
    """Issue 7's lock on the CI-size count simulation: variant "mean_field_lr_3e-3" of benchmarks/mask_recovery.py
    (mean-field guide, the paper's encoder parametrisation, lr 3e-3) reached F1 0.643 / 0.581 / 0.636 and
    AUROC 0.810 / 0.795 / 0.782 at seeds 0 / 1 / 2; the paper recipe reached F1 0.473 / 0.484 / 0.495."""
    adata = simulate_counts(seed=0)
    model = fit(adata, guide="mean_field", guide_kwargs={"subtract_offset": False}, max_steps=1000, val_every=100)
    truth = adata.uns["sams_truth"]
    scores = mask_recovery(pd.DataFrame(np.asarray(truth["mask"]), index=list(truth["perturbations"])),
                           model.mask_probabilities())
    assert scores["f1"] >= 0.55 and scores["auroc"] >= 0.78


def test_treatment_effect_intervals_are_locked_at_their_measured_calibration(model, simulation):
    """Issue 14's lock (not its target): the demo recipe at seed 0, one thread, these sampling sizes measured
    (b) posterior-predictive intervals of the test cells' data ATE covering 0.838 at 90% (0.462 at 50%, 0.882 at
    95%) with calibration slope 1.149, and (a) population intervals covering 0.694 of the true ATE at 90% with
    slope 0.772 (shrinkage toward zero; the README's calibration table lists its causes)."""
    scores = model.ate_calibration("test", truth=simulation.uns["sams_truth"], n_global_draws=50,
                                   samples_per_draw=200, n_predictive_draws=100)
    predictive, population = scores["predictive"], scores["population"]
    assert 0.78 <= predictive["coverage"][0.9] <= 0.97
    assert 0.85 <= predictive["calibration_slope"] <= 1.35
    assert 0.6 <= population["coverage"][0.9] and 0.68 <= population["slope"] <= 1.1


def test_the_calibrated_recipe_sizes_effects_and_covers_them():
    """Issue 14's calibrated recipe, locked: ``inference={"target": 0.25}`` (a decided, sparse mask) and a bag of
    five fits, four on bootstrap resamples of the training cells (``train(bootstrap=k)``), pooled with ``ensemble=``
    (variant "bagging_5_sparse" of benchmarks/calibration.py, demo seed 0, one thread). Measured: (a) slope 0.924,
    90% coverage of the true ATE 0.823 (target 0.85-0.95); (b) 90% coverage of the test cells' data ATE 0.858."""
    adata = demo_data(seed=0)[0]
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    fits = SAMSVAE.bagged(adata, 5, train=RECIPE | {"inference": {"target": 0.25}}, n_latent=8, n_hidden=128,
                          mask_prior_prob=0.1, guide_kwargs={"embedding_hidden": 128}, device="cpu")
    scores = fits[0].ate_calibration("test", truth=adata.uns["sams_truth"], ensemble=fits[1:])
    population, predictive = scores["population"], scores["predictive"]
    # a seed-only ensemble of the same recipe covered 0.742 and the first fit alone 0.431: the floor of 0.77 needs
    # the bootstrap resamples
    assert 0.86 <= population["slope"] <= 1.1 and 0.77 <= population["coverage"][0.9] <= 0.97
    assert 0.78 <= predictive["coverage"][0.9] <= 0.97

"""Every comparison family through the shared user API: train, evaluate, predict, save/load (issue 5)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from samsvae_pyro import CPAVAE, SAMSVAE, ConditionalVAE, SVAEPlus
from samsvae_pyro.api import FAMILIES
from samsvae_pyro.runs import evaluate_run

SMALL = dict(n_latent=3, n_hidden=16, device="cpu")
FAST = dict(batch_size=64, lr=1e-2, progress=False)
ENCODING = {CPAVAE: "sum", ConditionalVAE: "sum", SVAEPlus: "unique"}  # SVAE+: one perturbation per cell


def register(adata, family, **setup):
    adata = adata.copy()
    family.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split",
                         **setup)
    return adata


@pytest.mark.parametrize("family", [f for f in FAMILIES.values() if f is not SAMSVAE], ids=lambda f: f.__name__)
def test_family_trains_evaluates_predicts_and_round_trips(tiny_adata, family, tmp_path):
    adata = register(tiny_adata, family, encoding=ENCODING[family])
    model = family(adata, **SMALL)
    assert np.isfinite(model.train(max_steps=6, val_every=3, **FAST)["train_loss"]).all()

    report = evaluate_run(model, tmp_path / "report", truth=adata.uns["sams_truth"], n_particles=4, ate_draws=3,
                            ate_samples_per_draw=3, plots=False)
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["model"]["class"] == family.__name__
    assert np.isfinite(report["iwelbo"]["mean"]) and report["ate"]["model"]["all"]["n_conditions"] == 5
    mask = report["truth"]["mask_recovery"]
    assert ("no mask" in mask["skipped"]) if family is not SVAEPlus else 0 <= mask["auroc"] <= 1

    double = next(c for c in model.data.conditions() if "+" in c)
    generated = model.predict([double, "P1"], n_cells=4)
    assert list(generated.obs["perturbation"]) == [double] * 4 + ["P1"] * 4
    assert np.array_equal(generated.layers["counts"], np.round(generated.layers["counts"]))
    assert model.predict([double], mode="counterfactual").n_obs == model.data.control_mask.sum()

    model.save(tmp_path / "saved")
    loaded = family.load(tmp_path / "saved", adata, device="cpu")
    np.testing.assert_array_equal(model.model_ate(n_global_draws=3, samples_per_draw=2).X,
                                  loaded.model_ate(n_global_draws=3, samples_per_draw=2).X)
    pd.testing.assert_series_equal(model.iwelbo(n_particles=4), loaded.iwelbo(n_particles=4))


def test_families_without_a_mask_say_so(registered):
    cpa, cvae = CPAVAE(registered, **SMALL), ConditionalVAE(registered, **SMALL)
    assert cpa.perturbation_embeddings().shape == (4, 3)
    with pytest.raises(ValueError, match="CPAVAE has no mask.*SAMSVAE"):
        cpa.mask_probabilities()
    for call, what in [(cvae.mask_probabilities, "mask"), (cvae.perturbation_embeddings, "perturbation embeddings"),
                       (lambda: cvae.get_latent_representation(kind="perturbed"), "perturbed latent")]:
        with pytest.raises(ValueError, match=f"ConditionalVAE has no {what}"):
            call()
    assert cvae.get_latent_representation().shape == (registered.n_obs, 3)


def test_svae_plus_refuses_combinations_and_names_the_fix(registered):
    with pytest.raises(ValueError, match=r"at most one perturbation per cell, but 40 cells .*'P\d\+P\d'.*"
                                         r"encoding='unique'"):
        SVAEPlus(registered, **SMALL)


def test_svae_plus_accessors_read_the_mask_posterior_and_the_shift(tiny_adata):
    model = SVAEPlus(register(tiny_adata, SVAEPlus, encoding="unique"), beta=2.0, **SMALL)
    names = list(model.data.vocabulary.perturbations)
    probs, shifts = model.mask_probabilities(), model.perturbation_embeddings()
    assert list(probs.index) == names == list(shifts.index) and probs.shape == (5, 3)
    np.testing.assert_allclose(probs.values, 0.5, atol=1e-6)  # q(m = 1) = sigmoid(0) before training
    np.testing.assert_array_equal(shifts.values, model.model.shift.detach().numpy())
    with torch.no_grad():
        model.model.shift.fill_(3.0)
    torch.manual_seed(0)
    perturbed = model.get_latent_representation(kind="perturbed")
    torch.manual_seed(0)  # the same draws: perturbed - basal is the posterior mean of d (M * mu)
    basal = model.get_latent_representation(kind="basal")
    controls = model.data.control_mask
    np.testing.assert_allclose(perturbed[controls], basal[controls], atol=1e-6)
    steps = (perturbed[~controls] - basal[~controls]) / 3 * 10  # mean of 3 m over 10 draws, in tenths of 3
    assert np.allclose(steps, np.round(steps), atol=1e-3) and steps.min() > -1e-3 and steps.max() < 10 + 1e-3
    assert steps.max() > 0.5


def test_guide_of_another_family_is_rejected_with_the_sites(registered):
    with pytest.raises(ValueError, match=r"missing sites \[\], extra sites \['E'\]"):
        ConditionalVAE(registered, guide="mean_field", **SMALL)
    with pytest.raises(ValueError, match=r"missing sites \['E', 'mask'\], extra sites \[\]"):
        SAMSVAE(registered, guide="conditional", **SMALL)


def test_beta_bernoulli_mask_probabilities_are_the_posterior_of_m_not_of_its_prior_probability(registered):
    model = SAMSVAE(registered, mask_prior="beta_bernoulli", **SMALL)
    with torch.no_grad():
        model.guide.mask.logits.normal_(0.0, 2.0)
        model.guide.mask.prob_logits.fill_(-3.0)
    expected = torch.sigmoid(model.guide.mask.logits).detach().numpy()
    np.testing.assert_allclose(model.mask_probabilities(n_samples=3).to_numpy(), expected, rtol=1e-6)

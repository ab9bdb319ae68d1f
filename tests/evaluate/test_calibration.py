"""Calibrated treatment effects (issue 14): summaries, predictive replicates of held-out cells, the plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.evaluate.calibration import (
    ate_calibration,
    calibration_summary,
    predictive_ate_draws,
)
from samsvae_pyro.evaluate.metrics import ate_slope
from samsvae_pyro.evaluate.plots import plot_calibration
from samsvae_pyro.evaluate.predictive import model_ate_draws


@pytest.fixture(scope="module")
def screen():
    adata = simulate_counts(n_perturbations=3, cells_per_perturbation=40, n_double=1, n_genes=20, n_ate_samples=200)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    return adata


@pytest.fixture(scope="module")
def fitted(screen):
    adata = screen
    model = SAMSVAE(adata, n_latent=4, n_hidden=16, mask_prior_prob=0.3, device="cpu")
    model.train(max_steps=20, batch_size=64, lr=3e-3, val_every=10, progress=False)
    return model, adata.uns["sams_truth"]


def test_slope_measures_shrinkage_on_large_entries_only():
    reference = np.array([0.1, -0.2, 1.0, -2.0, 3.0, 4.0])
    assert ate_slope(0.6 * reference, reference) == pytest.approx(0.6)
    # small entries are left out: noise there does not move the slope
    noisy = 0.6 * reference + np.array([5.0, -5.0, 0, 0, 0, 0])
    assert ate_slope(noisy, reference) == pytest.approx(0.6)
    assert np.isnan(ate_slope(reference[:2], reference[:2]))


def test_summary_coverage_is_nominal_for_draws_from_the_reference_distribution():
    rng = np.random.default_rng(0)
    centre = rng.normal(0, 2, size=(20, 100))
    draws = centre + rng.normal(size=(400, 20, 100))
    reference = centre + rng.normal(size=(20, 100))
    summary = calibration_summary(draws, reference)
    for level, observed in summary["coverage"].items():
        assert abs(observed - level) < 0.03, (level, observed)
    assert summary["mean_width"][0.9] == pytest.approx(2 * 1.645, rel=0.05)
    # a noisy reference attenuates the slope of the mean on it; the reverse (calibration) slope stays at 1
    assert summary["slope"] < 0.9 and summary["calibration_slope"] == pytest.approx(1.0, abs=0.05)
    # an over-confident posterior shrunk by half covers far less and has slope 0.5
    shrunk = calibration_summary(0.5 * centre + 0.3 * (draws - centre), centre)
    assert shrunk["slope"] == pytest.approx(0.5, abs=0.02) and shrunk["calibration_slope"] == pytest.approx(2, abs=0.1)
    assert shrunk["coverage"][0.9] < 0.5
    assert list(summary["per_condition"].columns[:4]) == ["coverage_50", "coverage_80", "coverage_90", "coverage_95"]


def test_predictive_replicates_differ_from_the_population_ate_by_finite_sample_noise(fitted):
    model, _ = fitted
    D_conditions = torch.eye(3)
    batch = model.example_batch(1)
    with torch.random.fork_rng():
        torch.manual_seed(1)  # both functions draw the same globals first
        population = model_ate_draws(model.model, model.guide, batch, D_conditions, n_global_draws=30,
                                     samples_per_draw=2000)
    spreads = []
    for n in (25, 400):
        D = torch.cat([D_conditions.repeat_interleave(n, 0), torch.zeros(n, 3)])
        groups = torch.arange(4).repeat_interleave(n)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            predictive = predictive_ate_draws(model.model, model.guide, batch, D, torch.full((4 * n,), 1e4), groups,
                                              4, n_draws=30)
        assert predictive.shape == population.shape == (30, 3, 20)
        difference = predictive - population
        spreads.append(float(difference.std()))
        assert abs(float(difference.mean())) < 0.05  # unbiased: the same ATE per draw at library 1e4
    # their noise falls as 1 / sqrt(n)
    assert 2.5 < spreads[0] / spreads[1] < 6


def test_ate_calibration_reports_both_checks(fitted):
    model, truth = fitted
    out = model.ate_calibration("test", truth=truth, n_global_draws=10, samples_per_draw=20, n_predictive_draws=20)
    predictive, population = out["predictive"], out["population"]
    assert set(predictive["coverage"]) == set(population["coverage"]) == {0.5, 0.8, 0.9, 0.95}
    assert list(population["per_condition"].index) == list(truth["true_ate_conditions"])
    assert predictive["per_condition"]["n_cells"].min() >= 1
    coverage = [predictive["coverage"][level] for level in (0.5, 0.8, 0.9, 0.95)]
    assert coverage == sorted(coverage)  # wider intervals cover at least as much
    with pytest.raises(ValueError, match="min_cells"):
        ate_calibration(model.model, model.guide, model.data, model.example_batch(1), model.data.indices("test"),
                        min_cells=10_000)


def test_an_ensemble_pools_the_posteriors_of_its_fits(screen, fitted):
    model, truth = fitted
    other = SAMSVAE(screen, n_latent=4, n_hidden=16, mask_prior_prob=0.3, device="cpu", seed=1)
    other.train(max_steps=150, batch_size=64, lr=3e-2, val_every=50, seed=1, progress=False)  # a different fit
    options = dict(n_global_draws=40, samples_per_draw=50, n_predictive_draws=200)
    single = [m.ate_calibration("test", truth=truth, **options) for m in (model, other)]
    pooled = model.ate_calibration("test", truth=truth, ensemble=[other], **options)
    # the mixture's mean is the fits' average (measured: 0.04 from it, the fits 0.42 apart) ...
    means = [out["predictive_ate"].X for out in single]
    assert np.abs(pooled["predictive_ate"].X - (means[0] + means[1]) / 2).mean() < 0.25 * np.abs(means[0] - means[1]).mean()
    # ... and its population intervals add the spread between the fits (measured: 1.13 against 0.92 and 1.04)
    assert pooled["population"]["mean_width"][0.9] > max(out["population"]["mean_width"][0.9] for out in single)
    # the user-facing intervals pool the same way (measured: 1.12 against 0.86 and 0.94)
    ates = [m.model_ate(n_global_draws=40, samples_per_draw=50, ensemble=e) for m, e in ((model, ()), (other, ()),
                                                                                        (model, [other]))]
    widths = [float(np.mean(a.layers["upper"] - a.layers["lower"])) for a in ates]
    assert widths[2] > max(widths[:2]), widths
    genes = screen[:, :10].copy()
    SAMSVAE.setup_anndata(genes, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    stranger = SAMSVAE(genes, n_latent=4, n_hidden=16, device="cpu")
    with pytest.raises(ValueError, match="same data"):
        model.ate_calibration("test", ensemble=[stranger], **options)
    with pytest.raises(ValueError, match="same data"):
        model.model_ate(ensemble=[stranger])


def test_calibration_plot_is_written(tmp_path):
    path = plot_calibration({"(a) population": {"0.5": 0.4, "0.9": 0.8}, "(b) predictive": {0.5: 0.5, 0.9: 0.9}},
                            tmp_path / "calibration.png", slopes={"(a) population": 0.8})
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="empty"):
        plot_calibration({}, tmp_path / "empty.png")

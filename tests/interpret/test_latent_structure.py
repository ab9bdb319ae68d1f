"""Latent structure of a trained SAMS-VAE on a simulation whose perturbations come in known groups.

Count simulation: 12 perturbations in 4 groups of 3 that share their mask row and sign pattern
(simulate_counts(n_groups=4)), K = 8, 100 cells per condition; SAMS-VAE trained 300 steps (about 10 s
on one thread). Measured at seed 0: AUROC of same-group pairs 1.000 against a permutation null of
0.496 +- 0.085 (z 5.9), ARI 1.000 against -0.008 +- 0.134 (z 7.5); at seeds 1-3 the same AUROC and
ARI with z >= 5.3. The tests ask for z > 3.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from samsvae_pyro import SAMSVAE, simulate_counts
from samsvae_pyro.device import seeded
from samsvae_pyro.evaluate.posterior import guide_trace
from samsvae_pyro.evaluate import genes_per_dim, perturbations_per_dim
from samsvae_pyro.models.plates import E, MASK
from samsvae_pyro.runs import interpret_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grouped():
    """(trained model, true groups) on the grouped count simulation."""
    torch.set_num_threads(1)
    adata = simulate_counts(n_perturbations=12, n_groups=4, cells_per_perturbation=100, n_ate_samples=10, seed=0)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    model = SAMSVAE(adata, n_latent=8, n_hidden=64, mask_prior_prob=0.1, device="cpu")
    model.train(max_steps=300, batch_size=128, lr=1e-2, val_every=1000, progress=False)
    return model, adata.uns["sams_truth"]["groups"]


def test_true_groups_are_recovered_far_above_the_permutation_null(grouped, tmp_path):
    model, groups = grouped
    report = interpret_run(model, tmp_path, groups=groups, n_permutations=1000)
    for name in ("auroc", "ari"):
        row = report["grouping"][name]
        assert row["z_score"] > 3 and row["p_value"] < 0.01, row
        assert row["observed"] > row["null_mean"] + 0.3
    assert report["grouping"]["n_groups"] == 4 and report["grouping"]["n_grouped"] == 12
    assert json.loads((tmp_path / "interpret.json").read_text()) == report
    for name in report["files"]:
        assert (tmp_path / name).is_file()
    assert (tmp_path / "similarity_heatmap.png").read_bytes().startswith(b"\x89PNG")
    clusters = pd.read_csv(tmp_path / "clusters.csv", index_col="perturbation")
    assert clusters.groupby("group")["cluster"].nunique().eq(1).all()  # each true group in one cluster


def test_a_wrong_grouping_scores_like_the_null(grouped, tmp_path):
    model, groups = grouped
    members = [list(ps) for ps in groups.values()]
    interleaved = {f"W{i}": [ps[i] for ps in members] for i in range(3)}  # one member of each true group
    score = interpret_run(model, tmp_path, groups=interleaved, n_permutations=300, plots=False)["grouping"]
    assert score["auroc"]["z_score"] < 1 and score["auroc"]["observed"] < 0.5


def test_latent_dims_are_switched_on_by_whole_groups(grouped):
    model, groups = grouped
    effects, inclusion = model.posterior_effects()
    table = perturbations_per_dim(effects, inclusion, top_n=3)
    assert len(table) == 3 * 8 and table.groupby("latent_dim")["inclusion_prob"].is_monotonic_decreasing.all()
    group_of = {p: g for g, ps in groups.items() for p in ps}
    top_groups = table.assign(group=table["perturbation"].map(group_of)).groupby("latent_dim")["group"].nunique()
    assert (top_groups == 1).sum() >= 2  # a single group fills a dim's top 3 by chance with probability 1.8%


def test_posterior_effects_average_the_product_per_draw(grouped):
    model, _ = grouped
    effects, inclusion = model.posterior_effects(40, seed=3)
    with seeded(3, model.device):
        trace = guide_trace(model.guide, model.example_batch(1), 40)
    product = (trace.nodes[E]["value"] * trace.nodes[MASK]["value"]).mean(0)  # (T, K)
    np.testing.assert_allclose(effects.to_numpy(), product.numpy(), atol=1e-5)
    np.testing.assert_allclose(inclusion.to_numpy(), model.mask_probabilities().to_numpy(), atol=1e-5)
    assert list(effects.index) == list(model.data.vocabulary.perturbations)


def test_decoder_response_is_the_mean_shift_of_log_expression(grouped):
    model, _ = grouped
    net, n = model.model, 256
    response = model.decoder_response(n, shift=0.5, seed=1)
    assert response.shape == (8, net.n_genes) and list(response.columns) == list(model.data.var_names)
    z = torch.randn(n, 8, generator=torch.Generator().manual_seed(5))
    library = torch.full((n,), 1e4)
    with torch.no_grad():
        base = torch.log2(1 + net.observation(z, library).mean)
        shifted = torch.log2(1 + net.observation(z + 0.5 * torch.eye(8)[2], library).mean)
    expected = (shifted - base).mean(0).numpy()  # the same quantity for dim 2, other basal states
    assert np.corrcoef(response.loc["latent_2"], expected)[0, 1] > 0.99  # measured 0.999
    assert model.decoder_response(8, shift=0.0).abs().to_numpy().max() == 0.0
    genes = genes_per_dim(response, top_n=5)
    assert len(genes) == 40 and genes.groupby("latent_dim")["response"].apply(
        lambda r: r.abs().is_monotonic_decreasing).all()
    top = genes[genes["rank"] == 1].set_index("latent_dim")["response"]
    assert np.allclose(top.abs(), response.abs().max(axis=1).loc[top.index])


def test_report_without_groups_and_on_mask_probabilities(grouped, tmp_path):
    model, _ = grouped
    report = interpret_run(model, tmp_path, source="mask", n_samples=10, n_basal=8, top_n=2, plots=False)  # the method
    assert report["grouping"] == {"skipped": "no grouping given"}
    assert not (tmp_path / "grouping_score.csv").exists() and "similarity.csv" in report["files"]
    assert report["settings"]["source"] == "mask" and report["n_clusters_found"] >= 1


def test_bad_grouping_fails_before_any_output(grouped, tmp_path):
    model, _ = grouped
    with pytest.raises(ValueError, match="'P99'"):
        interpret_run(model, tmp_path / "out", groups={"a": ["P00", "P99"], "b": ["P01", "P02"]})
    with pytest.raises(ValueError, match="source='latent'"):
        interpret_run(model, tmp_path / "out", source="latent")
    assert not (tmp_path / "out").exists()

"""Simulations: ground truth re-derives the latents; same seed, same data; stated defaults."""

from __future__ import annotations

import numpy as np
import pytest

from samsvae_pyro.data import build_perturbation_data, simulate_counts, simulate_paper


def _rederive_z(adata, data):
    """z = z_basal + D (E * M) from the stored truth, with D in the truth's row order."""
    truth = adata.uns["sams_truth"]
    order = [data.vocabulary.perturbations.index(p) for p in truth["perturbations"]]
    dosages = data.dosages.toarray()[:, order]
    return adata.obsm["z_basal"] + dosages @ (truth["embedding"] * truth["mask"])


def test_counts_truth_rederives_z(sim_counts):
    data = build_perturbation_data(
        sim_counts, perturbation_key="perturbation", control_label="non-targeting"
    )
    np.testing.assert_allclose(_rederive_z(sim_counts, data), sim_counts.obsm["z"], atol=1e-5)
    assert sim_counts.uns["sams_truth"]["mask"].any(axis=1).all()  # every perturbation acts


def test_paper_truth_rederives_z():
    adata = simulate_paper(n_perturbations=6, cells_per_perturbation=(20, 5, 5), seed=2)
    data = build_perturbation_data(
        adata, perturbation_key="perturbation", split_key="split", count_data=False
    )
    np.testing.assert_allclose(_rederive_z(adata, data), adata.obsm["z"], atol=1e-5)


def test_paper_defaults():
    adata = simulate_paper()
    truth = adata.uns["sams_truth"]
    assert adata.shape == (101 * 700, 100)
    assert truth["mask"].shape == truth["embedding"].shape == (100, 15)
    assert truth["mask_prob"] == pytest.approx(2 / 15)
    assert abs(truth["mask"].mean() - 2 / 15) < 0.03
    magnitudes = np.abs(truth["embedding"])
    assert abs(magnitudes.mean() - 5.0) < 0.05 and abs(magnitudes.std() - 0.5) < 0.05
    assert (adata.obs["split"] == "train").sum() == 101 * 500
    assert set(adata.obs["perturbation"][:700]) == {"control"}
    # the decoder mean has unit variance per gene and the noise variance 0.25 (20% of 1.25)
    assert np.allclose(adata.X.astype(np.float64).var(axis=0), 1.25, rtol=0.03)


def test_same_seed_same_data():
    for simulate in (
        lambda s: simulate_counts(n_perturbations=3, cells_per_perturbation=10, n_double=1, seed=s),
        lambda s: simulate_paper(n_perturbations=3, cells_per_perturbation=(5, 2, 2), seed=s),
    ):
        a, b, c = simulate(7), simulate(7), simulate(8)
        x = [m.toarray() if hasattr(m, "toarray") else m for m in (a.X, b.X, c.X)]
        np.testing.assert_array_equal(x[0], x[1])
        np.testing.assert_array_equal(a.obsm["z"], b.obsm["z"])
        assert a.obs.equals(b.obs)
        np.testing.assert_array_equal(
            a.uns["sams_truth"]["embedding"], b.uns["sams_truth"]["embedding"]
        )
        assert not np.array_equal(x[0], x[2])


def test_counts_are_sparse_integers_with_library_spread(sim_counts):
    x = sim_counts.X
    assert x.format == "csr" and x.dtype == np.float32
    assert np.array_equal(x.data, np.round(x.data)) and (x.data > 0).all()
    library = np.asarray(x.sum(axis=1)).ravel()
    assert 0.25 < np.log(library).std() < 0.6
    assert 5 < x.toarray().mean() < 30
    assert set(sim_counts.obs["perturbation"]) >= {"non-targeting", "P0"}
    assert list(sim_counts.var["gene_name"]) == list(sim_counts.var_names)


def test_true_ate_matches_data_ate():
    adata = simulate_counts(cells_per_perturbation=400, n_double=2, seed=3)
    truth = adata.uns["sams_truth"]
    x = adata.X.toarray()
    f = np.log2(1 + 1e4 * x / x.sum(axis=1, keepdims=True))
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    control = f[labels == "non-targeting"].mean(axis=0)
    data_ate = np.stack(
        [f[labels == c].mean(axis=0) - control for c in truth["true_ate_conditions"]]
    )
    assert truth["true_ate"].shape == data_ate.shape == (14, 60)
    assert np.corrcoef(data_ate.ravel(), truth["true_ate"].ravel())[0, 1] > 0.95


def test_every_perturbation_has_a_visible_effect():
    adata = simulate_counts(seed=1)
    ate = adata.uns["sams_truth"]["true_ate"]
    x = adata.X.toarray()
    f = np.log2(1 + 1e4 * x / x.sum(axis=1, keepdims=True))
    control_sd = f[adata.obs["perturbation"] == "non-targeting"].std(axis=0)
    standard_error = control_sd * np.sqrt(2 / 200)
    assert (np.abs(ate / standard_error).max(axis=1) > 5).all()


def test_n_double_too_large():
    with pytest.raises(ValueError, match="n_double=4 exceeds the 3 distinct pairs"):
        simulate_counts(n_perturbations=3, n_double=4)


@pytest.mark.parametrize("simulate", [
    lambda n: simulate_counts(n_perturbations=11, n_groups=n, cells_per_perturbation=5, n_ate_samples=5, seed=4),
    lambda n: simulate_paper(n_perturbations=11, n_groups=n, cells_per_perturbation=(5, 1, 1), seed=4),
])
def test_grouped_perturbations_share_dims_and_signs(simulate):
    truth = simulate(4).uns["sams_truth"]
    groups = {g: list(ps) for g, ps in truth["groups"].items()}
    assert [len(ps) for ps in groups.values()] == [3, 3, 3, 2]
    assert sum(groups.values(), []) == list(truth["perturbations"])
    signed = np.sign(truth["mask"] * truth["embedding"])  # (T, K)
    rows = [signed[[truth["perturbations"].index(p) for p in ps]] for ps in groups.values()]
    assert all((r == r[0]).all() for r in rows)  # members act alike
    assert len({r[0].tobytes() for r in rows}) == 4  # groups differ
    magnitudes = np.abs(truth["embedding"][:3])
    assert not np.allclose(magnitudes[0], magnitudes[1])  # magnitudes are drawn per member
    assert "groups" not in simulate(0).uns["sams_truth"]
    with pytest.raises(ValueError, match="n_groups=12 must lie between 0"):
        simulate(12)


def test_paper_simulation_doubles_add_pairs_and_keep_the_singles():
    plain = simulate_paper(n_perturbations=5, cells_per_perturbation=(6, 2, 2), seed=1)
    doubled = simulate_paper(n_perturbations=5, cells_per_perturbation=(6, 2, 2), n_double=3, seed=1)
    pairs = sorted(set(doubled.obs["perturbation"]) - set(plain.obs["perturbation"]))
    assert len(pairs) == 3 and all(label.count("+") == 1 for label in pairs)
    assert doubled.n_obs == plain.n_obs + 3 * 10
    truth = doubled.uns["sams_truth"]
    a, b = (int(name[1:]) for name in pairs[0].split("+"))
    cells = doubled.obs["perturbation"] == pairs[0]
    shift = doubled.obsm["z"][cells] - doubled.obsm["z_basal"][cells]
    expected = (truth["mask"] * truth["embedding"])[[a, b]].sum(axis=0)
    np.testing.assert_allclose(shift, np.broadcast_to(expected, shift.shape), atol=1e-5)

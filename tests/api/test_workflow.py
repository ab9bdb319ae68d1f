from typing import get_args

import numpy as np
import pandas as pd
import pytest

from samsvae_pyro import SAMSVAE
from samsvae_pyro._typing import Likelihood, SAMSGuideName
from tests.conftest import small_model

FAST = dict(batch_size=64, lr=1e-2, progress=False)


@pytest.fixture
def trained(registered):
    model = small_model(registered)
    model.train(max_steps=10, val_every=5, **FAST)
    return model


def test_accessors_are_frames_indexed_by_perturbation(trained):
    names = list(trained.data.vocabulary.perturbations)
    probs, emb = trained.mask_probabilities(), trained.perturbation_embeddings()
    for frame in (probs, emb):
        assert isinstance(frame, pd.DataFrame) and list(frame.index) == names and frame.shape == (4, 3)
    assert ((probs.values >= 0) & (probs.values <= 1)).all()


def test_latent_representation_shapes_and_offsets(trained, registered):
    basal = trained.get_latent_representation(kind="basal")
    perturbed = trained.get_latent_representation(kind="perturbed")
    assert basal.shape == perturbed.shape == (registered.n_obs, 3)
    controls = trained.data.control_mask
    assert not np.allclose(basal[~controls], perturbed[~controls])


def test_save_load_round_trip_gives_identical_predictions(trained, registered, tmp_path):
    trained.save(tmp_path / "m")
    loaded = SAMSVAE.load(tmp_path / "m", registered, device="cpu")
    a, b = trained.model_ate(n_global_draws=4, samples_per_draw=3), loaded.model_ate(n_global_draws=4, samples_per_draw=3)
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_series_equal(trained.iwelbo(n_particles=5), loaded.iwelbo(n_particles=5))
    with pytest.raises(ValueError, match="overwrite=True"):
        trained.save(tmp_path / "m")


def test_load_rejects_other_genes(trained, registered, tmp_path):
    trained.save(tmp_path / "m")
    other = registered[:, ::-1].copy()
    with pytest.raises(ValueError, match="genes"):
        SAMSVAE.load(tmp_path / "m", other, device="cpu")


def test_iwelbo_is_per_cell_and_named(trained):
    values = trained.iwelbo(n_particles=8)
    test_cells = trained.data.obs_names[trained.data.indices("test")]
    assert list(values.index) == list(test_cells) and np.isfinite(values).all()
    assert isinstance(trained.iwelbo(n_particles=8, kind="joint"), float)


def test_model_ate_has_intervals_and_split_flags(trained):
    ate = trained.model_ate(n_global_draws=6, samples_per_draw=4)
    assert ate.shape == (len(trained.data.conditions()), 20)
    assert (ate.layers["lower"] <= ate.X + 1e-9).all() and (ate.X <= ate.layers["upper"] + 1e-9).all()
    assert {"in_train", "in_val", "in_test"} <= set(ate.obs.columns)


def test_predict_an_unseen_combination_generatively_and_counterfactually(trained):
    names = list(trained.data.vocabulary.perturbations)
    unseen = f"{names[1]}+{names[3]}"
    gen = trained.predict([unseen, names[0]], n_cells=5)
    assert gen.shape == (10, 20) and list(gen.obs["perturbation"].unique()) == [unseen, names[0]]
    counts = gen.layers["counts"]
    assert np.array_equal(counts, np.round(counts)) and np.allclose(gen.X, np.log1p(counts / counts.sum(1, keepdims=True) * 1e4))
    cf = trained.predict([unseen], mode="counterfactual")
    assert cf.n_obs == trained.data.control_mask.sum() and cf.obs["source_cell"].is_unique


def test_unknown_perturbation_is_named(trained):
    with pytest.raises(ValueError, match="NOPE"):
        trained.predict(["NOPE"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(guide="fancy"), "guide='fancy'"), (dict(likelihood="zinb"), "likelihood='zinb'"),
    (dict(n_latent=0), "n_latent"), (dict(mask_prior="spike"), "mask_prior"),
])
def test_bad_model_arguments_are_clear_errors(registered, kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_model(registered, **kwargs)


def test_unregistered_anndata_is_a_clear_error(tiny_adata):
    with pytest.raises(ValueError, match="setup_anndata"):
        SAMSVAE(tiny_adata)


def test_setup_validates_keys_before_training(tiny_adata):
    adata = tiny_adata.copy()
    with pytest.raises(ValueError, match="guide_identity"):
        SAMSVAE.setup_anndata(adata, perturbation_key="guide_identity")
    assert "_samsvae_setup" not in adata.uns


@pytest.mark.parametrize("guide", get_args(SAMSGuideName))
@pytest.mark.parametrize("likelihood", [name for name in get_args(Likelihood) if name != "normal"])
def test_each_guide_and_count_likelihood_trains_through_the_api(registered, guide, likelihood):
    history = small_model(registered, guide=guide, likelihood=likelihood).train(max_steps=3, **FAST)
    assert np.isfinite(history["train_loss"]).all()


def test_normal_likelihood_on_continuous_data():
    from samsvae_pyro import simulate_paper

    adata = simulate_paper(n_latent=3, n_perturbations=3, n_genes=10, cells_per_perturbation=(20, 5, 5), seed=0)
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", split_key="split", count_data=False)
    model = small_model(adata, likelihood="normal")
    assert model.data.x_transform == "identity"
    history = model.train(max_steps=3, **FAST)
    assert np.isfinite(history["train_loss"]).all()

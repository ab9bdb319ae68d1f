"""The user's own labels go in and come out (issue 17, items 10 to 12)."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from samsvae_pyro import SAMSVAE
from samsvae_pyro.data import build_perturbation_data

FAST = dict(max_steps=2, batch_size=64, progress=False)


def gene_named_adata(labels_per_condition: dict[str, int], seed: int = 0) -> AnnData:
    labels = [label for label, n in labels_per_condition.items() for _ in range(n)]
    counts = np.random.default_rng(seed).poisson(4.0, size=(len(labels), 8)).astype(np.float32)
    obs = pd.DataFrame({"condition": labels}, index=[f"cell{i}" for i in range(len(labels))])
    return AnnData(counts, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(8)]))


@pytest.fixture
def model():
    adata = gene_named_adata({"control": 40, "KLF1": 30, "CEBPA": 30, "KLF1+CEBPA": 30, "CEBPA+KLF1": 2})
    SAMSVAE.setup_anndata(adata, perturbation_key="condition")
    model = SAMSVAE(adata, n_latent=2, n_hidden=8, device="cpu")
    model.train(**FAST)
    return model


def test_labels_differing_only_in_case_are_warned_about_with_the_pairs():
    adata = gene_named_adata({"control": 20, "KLF1": 20, "klf1": 20, "GATA1": 20, "Gata1+KLF1": 20})
    with pytest.warns(UserWarning, match=r"differ only in case.*'GATA1' / 'Gata1'.*'KLF1' / 'klf1'"):
        build_perturbation_data(adata, perturbation_key="condition")


def test_model_ate_keeps_the_users_combination_labels_and_flags(model):
    ate = model.model_ate(n_global_draws=3, samples_per_draw=2)
    assert set(ate.obs_names) == {"KLF1", "CEBPA", "KLF1+CEBPA"}  # the most common spelling of the pair
    row = ate["KLF1+CEBPA"]
    assert row.n_obs == 1 and bool(row.obs["in_train"].iloc[0])
    either = model.model_ate(["CEBPA+KLF1"], n_global_draws=3, samples_per_draw=2)
    assert list(either.obs_names) == ["CEBPA+KLF1"] and bool(either.obs["in_train"].iloc[0])


def test_predict_and_model_ate_accept_a_single_label(model):
    cells = model.predict("KLF1", n_cells=4)
    assert cells.n_obs == 4 and set(cells.obs["perturbation"]) == {"KLF1"}
    assert list(model.model_ate("KLF1", n_global_draws=2, samples_per_draw=2).obs_names) == ["KLF1"]


def test_unknown_labels_list_close_matches(model):
    with pytest.raises(ValueError, match=r"'klf1' -> 'KLF1'"):
        model.predict("klf1")
    with pytest.raises(ValueError, match=r"'CEBPB' -> 'CEBPA'"):
        model.predict(["KLF1+CEBPB"])


def test_a_counterfactual_source_without_the_label_column_says_what_it_needs(model):
    source = gene_named_adata({"control": 5}).copy()
    source.obs = source.obs.drop(columns="condition")
    with pytest.raises(ValueError, match=r"source \(the cells to shift\).*Available columns: none.*obs\['condition'\]"):
        model.predict("KLF1", mode="counterfactual", source=source)
    source.obs["condition"] = "control"
    assert model.predict("KLF1", mode="counterfactual", source=source).n_obs == 5

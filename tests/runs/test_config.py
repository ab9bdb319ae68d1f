"""Config loading, overrides, variants, defaults and the errors a user sees (all before any training)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samsvae_pyro.runs import (
    apply_overrides,
    load_config,
    load_experiment_run,
    parse_overrides,
    resolve_config,
    run_config,
)
from tests.runs.conftest import SMOKE
from tests.runs.test_configs import CONFIGS

DEMO = next(path for path in CONFIGS if path.stem == "demo")


@pytest.fixture(scope="module")
def demo():
    return load_config(DEMO)


def test_overrides_are_parsed_as_yaml():
    assert parse_overrides(["train.lr=3.0e-4", "variant=cpa_vae", "a.b=[1, 2]", "x=null", "y=a=b"]) == {
        "train.lr": 3e-4, "variant": "cpa_vae", "a.b": [1, 2], "x": None, "y": "a=b"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["train.lr"])


def test_apply_overrides_creates_sections_and_refuses_to_descend_into_values():
    config = {"train": {"lr": 1.0}}
    assert apply_overrides(config, {"train.seed": 2, "guide": {"name": "x"}}) == {
        "train": {"lr": 1.0, "seed": 2}, "guide": {"name": "x"}}
    assert config == {"train": {"lr": 1.0}}  # not modified
    with pytest.raises(ValueError, match="train.lr holds a value"):
        apply_overrides(config, {"train.lr.x": 1})


def test_variant_then_user_overrides(demo):
    first = resolve_config(demo)
    assert first["variant"] == "sams_vae_correlated" and first["model"]["mask_prior_prob"] == 0.1
    assert first["guide"] == {"name": "correlated", "embedding_hidden": 128}
    assert first["train"]["estimator"] == "trace" and first["evaluate"]["top_k"] == 20  # defaults written out
    user = resolve_config(demo, {"model.mask_prior_prob": 0.3})
    assert user["model"]["mask_prior_prob"] == 0.3  # the user wins over the variant
    cpa = resolve_config(demo, {"variant": "cpa_vae"})
    assert cpa["model"]["class"] == "CPAVAE" and cpa["guide"] == {"name": "mean_field"}
    assert "mask_prior_prob" not in cpa["model"]
    assert resolve_config(demo, {"variant": "conditional_vae"})["guide"] == {"name": "conditional"}  # class default


@pytest.mark.parametrize("overrides, message", [
    ({"train.foo": 1}, r"unknown key 'foo' in section train; valid keys: max_steps"),
    ({"bogus": 1}, r"unknown key 'bogus' in the config"),
    ({"variant": "xyz"}, r"variant 'xyz' is not defined; the config's variants: sams_vae_correlated"),
    ({"model.class": "Nope"}, r"model.class='Nope'.*available: .*SAMSVAE"),
    ({"data.source": "geo"}, r"data.source='geo'.*choose one of norman"),
    ({"data.split.kind": "weird"}, r"data.split.kind='weird'.*norman_ood"),
    ({"data.split.fraction": 1.5}, r"data.split.fraction=1.5 should be a number in \[0, 1\]"),
    ({"data.split.key": "split"}, r"unknown key 'key' in data.split \(kind norman_ood\); valid keys: fraction, seed"),
    ({"data.setup.split_key": "s"}, r"unknown key 'split_key' in section data.setup"),
    ({"data.simulate.n_cells": 3}, r"unknown key 'n_cells' in section data.simulate"),
    ({"train.max_steps": 0}, r"train.max_steps=0 should be a positive integer"),
    ({"train.lr": "fast"}, r"train.lr='fast' should be a non-negative number"),
    ({"data.source": "h5ad"}, r"data.source=h5ad needs data.path"),
    ({"data.path": "x.h5ad"}, r"data.path does not apply to data.source=simulate_counts"),
])
def test_user_errors_name_the_key_and_the_fix(demo, overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(demo, overrides)


def test_a_missing_dataset_says_how_to_get_it(demo, monkeypatch, tmp_path):
    monkeypatch.setenv("SAMSVAE_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match=r"norman_2019_sc_pert.h5ad does not exist; download it with `samsvae "
                                         r"download norman`, or set data.path"):
        resolve_config(demo, {"data.source": "norman", "data.simulate": None})
    with pytest.raises(ValueError, match=r"replogle_filtered.h5ad does not exist; build it with .*build_replogle"):
        resolve_config(demo, {"data.source": "replogle", "data.simulate": None})


def test_bad_model_argument_fails_before_training(demo, small_inputs, tmp_path):
    config = resolve_config(demo, {**SMOKE, **small_inputs["simulate_counts"], "model.n_latnet": 4})
    with pytest.raises(ValueError, match="n_latnet"):
        run_config(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_run_directory_reloads_to_the_same_model(demo, small_inputs, tmp_path):
    config = resolve_config(demo, {**SMOKE, **small_inputs["simulate_counts"], "variant": "sams_vae_mean_field"})
    run_config(config, tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds a saved model"):
        run_config(config, tmp_path, progress=False)
    model, adata = load_experiment_run(tmp_path, device="cpu")
    assert "sams_truth" in adata.uns and len(model.history) == 2
    stored = pd.read_csv(tmp_path / "iwelbo_per_cell.csv", index_col=0)["iwelbo"]
    again = model.iwelbo(split="test", n_particles=2, seed=0)
    np.testing.assert_allclose(again.loc[stored.index].to_numpy(), stored.to_numpy(), rtol=1e-5)

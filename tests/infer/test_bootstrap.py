"""Bagging (issue 14): training on a bootstrap resample of the training cells, stratified by condition."""

import numpy as np
import pytest
import torch

from samsvae_pyro.data import bootstrap_cells
from tests.conftest import small_model

FAST = dict(max_steps=4, batch_size=64, lr=1e-2, progress=False, val_every=100)


def test_a_bootstrap_resample_keeps_each_conditions_count_and_draws_only_its_cells(registered):
    data = small_model(registered).data
    train = data.indices("train")
    rows = bootstrap_cells(data.labels, train, seed=3)
    assert len(rows) == len(train) and np.all(np.diff(rows) >= 0) and np.isin(rows, train).all()
    assert len(np.unique(rows)) < len(rows)  # drawn with replacement
    for label in np.unique(data.labels[train]):
        assert (data.labels[rows] == label).sum() == (data.labels[train] == label).sum()
    assert np.array_equal(rows, bootstrap_cells(data.labels, train, seed=3))
    assert not np.array_equal(rows, bootstrap_cells(data.labels, train, seed=4))


def test_train_with_bootstrap_serves_the_resample_and_is_reproducible(registered):
    served = []

    def fit(bootstrap):
        model = small_model(registered)
        loader = model.loader
        model.loader = lambda split, **kw: (kw.get("shuffle") and served.append(split)) or loader(split, **kw)
        model.train(bootstrap=bootstrap, **FAST)
        return model

    plain, first, again = fit(None), fit(3), fit(3)
    data = plain.data
    assert np.array_equal(served[0], data.indices("train"))
    assert np.array_equal(served[1], bootstrap_cells(data.labels, data.indices("train"), seed=3))
    assert first.trainer_state["arguments"]["bootstrap"] == 3
    params = [dict(m.guide.named_parameters()) for m in (plain, first, again)]
    assert all(torch.equal(params[1][k], params[2][k]) for k in params[1])
    assert not all(torch.equal(params[0][k], params[1][k]) for k in params[0])


def test_bagged_fits_differ_in_seed_and_resample_and_pool_in_model_ate(registered):
    from samsvae_pyro import SAMSVAE

    options = dict(n_latent=3, n_hidden=16, mask_prior_prob=0.2, device="cpu")
    fits = SAMSVAE.bagged(registered, 3, seed=7, train=FAST, **options)
    assert [f.trainer_state["arguments"]["bootstrap"] for f in fits] == [None, 1007, 2007]
    assert [f.trainer_state["arguments"]["seed"] for f in fits] == [7, 1007, 2007]
    conditions = fits[0].data.conditions()[:2]
    alone = fits[0].model_ate(conditions, n_global_draws=4, samples_per_draw=4)
    pooled = fits[0].model_ate(conditions, n_global_draws=4, samples_per_draw=4, ensemble=fits[1:])
    assert alone.shape == pooled.shape and not np.allclose(alone.X, pooled.X)
    seeds_only = SAMSVAE.bagged(registered, 2, seed=7, train=FAST, bootstrap=False, **options)
    assert [f.trainer_state["arguments"]["bootstrap"] for f in seeds_only] == [None, None]
    for bad, match in ((dict(n_fits=0), "n_fits=0"), (dict(train={"seed": 1}), "seed")):
        with pytest.raises(ValueError, match=match):
            SAMSVAE.bagged(registered, **({"n_fits": 2} | bad), **options)

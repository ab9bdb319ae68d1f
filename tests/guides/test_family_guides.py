"""Guides of the comparison families: they match their models, train, and keep their structure."""

import math
from typing import get_args

import pyro
import pytest
import torch

from samsvae_pyro._typing import SAMSGuideName
from samsvae_pyro.evaluate.iwelbo import iwelbo, log_weights
from samsvae_pyro.evaluate.posterior import guide_trace
from samsvae_pyro.evaluate.predictive import sample_globals
from samsvae_pyro.guides import check_guide, make_guide
from samsvae_pyro.infer import SVITrainer
from samsvae_pyro.models import CPAVAEModel, ConditionalVAEModel, SAMSVAEModel, SVAEPlusModel
from samsvae_pyro.models.plates import MASK, Z_BASAL
from samsvae_pyro.nn import gaussian_params
from tests.conftest import make_batch

G, T, K = 12, 5, 3
STATS = dict(x_mean=torch.zeros(G), x_std=torch.ones(G), input_transform="log1p")
PAIRS = [(CPAVAEModel, "mean_field"), (CPAVAEModel, "correlated"), (SVAEPlusModel, "svae_plus"),
         (ConditionalVAEModel, "conditional")]


def build(model_class, guide, **guide_kwargs):
    pyro.set_rng_seed(0)
    model = model_class(G, T, K, n_hidden=16)
    return model, make_guide(guide, model, **STATS, n_hidden=16, **guide_kwargs)


@pytest.mark.parametrize("model_class, guide", PAIRS)
def test_each_family_guide_matches_its_model_and_lowers_the_loss(model_class, guide):
    model, q = build(model_class, guide)
    batch = make_batch(B=32, n_cells=32)
    check_guide(model, q, batch)
    trainer = SVITrainer(model, q, n_particles=4, lr=2e-2)
    losses = [trainer.train_step(batch) for _ in range(30)]
    assert sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.parametrize("guide", get_args(SAMSGuideName))
def test_cpa_vae_guides_have_no_mask_site_or_parameters(guide):
    _, q = build(CPAVAEModel, guide)
    assert MASK not in guide_trace(q, make_batch(), 2).nodes
    assert not any("logits" in name for name in q.state_dict())


def test_svae_plus_guide_shares_the_models_shift_and_moves_the_encoder_mean():
    model, q = build(SVAEPlusModel, "svae_plus")
    assert q.shift is model.shift
    with torch.no_grad():
        model.shift.normal_()
    batch = make_batch()
    trace = guide_trace(q, batch, 3)
    loc = trace.nodes[Z_BASAL]["fn"].base_dist.loc  # (3, B, K)
    encoder_loc, _ = gaussian_params(q.encoder.net(q.encoder.normalise(batch["x"])))  # (B, K)
    expected = encoder_loc - batch["D"] @ (trace.nodes[MASK]["value"] * model.shift)
    torch.testing.assert_close(loc, expected)


def test_svae_plus_guide_trains_the_shared_shift_once():
    model, q = build(SVAEPlusModel, "svae_plus")
    trainer = SVITrainer(model, q, n_particles=2, lr=1e-2)
    trainer.train_step(make_batch())
    assert model.shift.abs().sum() > 0
    assert torch.equal(trainer.modules.state_dict()["model.shift"], trainer.modules.state_dict()["guide.shift"])
    assert sum(p is model.shift for p in trainer.modules.parameters()) == 1


def test_svae_plus_guide_needs_an_svae_plus_model():
    model = SAMSVAEModel(G, T, K, n_hidden=16)
    with pytest.raises(ValueError, match="needs an SVAE\\+ model"):
        make_guide("svae_plus", model, **STATS)


def test_iwelbo_of_a_family_without_global_sites():
    model, q = build(ConditionalVAEModel, "conditional")
    batch = make_batch()
    pyro.set_rng_seed(1)
    globals_ = sample_globals(q, batch, 6)
    assert dict(globals_) == {} and globals_.n_draws == 6
    local, ratio = log_weights(model, q, batch, globals_)
    assert local.shape == (6, 16) and torch.equal(ratio, torch.zeros(6))
    pyro.set_rng_seed(1)  # the same draws again
    values = iwelbo(model, q, [batch], n_particles=6)
    torch.testing.assert_close(values, torch.logsumexp(local, 0) - math.log(6))

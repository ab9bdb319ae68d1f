from typing import get_args

import pyro
import pytest
import torch
from pyro import distributions as dist
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule

from samsvae_pyro._typing import MaskPrior, SAMSGuideName
from samsvae_pyro.evaluate.posterior import guide_trace
from samsvae_pyro.guides import ComposedGuide, check_guide, make_guide
from samsvae_pyro.infer import ESTIMATORS, SVITrainer, check_estimator
from samsvae_pyro.models import SAMSVAEModel
from samsvae_pyro.models.plates import E, MASK, Z_BASAL, cells_plate, perturbations_plate
from tests.conftest import make_batch

STATS = dict(x_mean=torch.zeros(12), x_std=torch.ones(12), input_transform="log1p")

SAMS_GUIDES = get_args(SAMSGuideName)  # the other registered guides belong to other families


def build(guide="correlated", mask_prior="bernoulli", **guide_kwargs):
    model = SAMSVAEModel(12, 5, 3, n_hidden=16, mask_prior=mask_prior, mask_prior_prob=0.2)
    return model, make_guide(guide, model, **STATS, n_hidden=16, **guide_kwargs)


def loss_drops(model, guide, estimator, steps=30):
    pyro.set_rng_seed(0)
    batch = make_batch(B=32, n_cells=32)
    trainer = SVITrainer(model, guide, estimator=estimator, n_particles=4, lr=2e-2)
    losses = [trainer.train_step(batch) for _ in range(steps)]
    return sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("mask_prior", get_args(MaskPrior))
@pytest.mark.parametrize("guide", SAMS_GUIDES)
def test_every_guide_and_estimator_takes_steps_that_lower_the_loss(guide, mask_prior, estimator):
    model, q = build(guide, mask_prior)
    check_guide(model, q, make_batch())
    assert loss_drops(model, q, estimator)


def test_score_function_mask_trains_with_tracegraph_and_is_rejected_elsewhere():
    model, q = build("mean_field", mask_gradient="score")
    batch = make_batch()
    for estimator in ("trace", "mean_field"):
        with pytest.raises(ValueError, match="tracegraph"):
            check_estimator(estimator, q, batch)
    check_estimator("tracegraph", q, batch)
    assert loss_drops(model, q, "tracegraph")


@pytest.mark.parametrize("guide", SAMS_GUIDES)
def test_mask_samples_are_binary_after_broadcasting_over_particles(guide):
    _, q = build(guide)
    trace = guide_trace(q, make_batch(), n_samples=7)
    mask = trace.nodes[MASK]["value"]
    assert mask.shape == (7, 5, 3)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert trace.nodes[E]["value"].shape == (7, 5, 3)
    assert trace.nodes[Z_BASAL]["value"].shape == (7, 16, 3)


@pytest.mark.parametrize("guide", SAMS_GUIDES)
def test_encoder_mean_is_the_whole_latent_state_minus_the_offset_unless_disabled(guide):
    """Default subtract_offset: q(z_basal)'s mean is f(x~) - d (E * M); disabled, it is f(x~) (x-only encoder)."""
    from pyro import poutine

    batch = make_batch()
    globals_ = {E: torch.randn(5, 3), MASK: torch.bernoulli(torch.full((5, 3), 0.5))}
    locs = {}
    for subtract in (True, False):
        torch.manual_seed(0)
        _, q = build(guide, use_offset=False, subtract_offset=subtract)
        trace = poutine.trace(poutine.condition(q, data=globals_)).get_trace(batch)
        locs[subtract] = trace.nodes[Z_BASAL]["fn"].base_dist.loc
    offset = batch["D"] @ (globals_[E] * globals_[MASK])
    assert offset.abs().sum() > 0
    assert torch.allclose(locs[True], locs[False] - offset, atol=1e-5)


def test_encoder_without_offset_ignores_the_globals():
    _, q = build("mean_field", use_offset=False)
    assert q.encoder.net.inputs[0].in_features == 12 and len(q.encoder.net.inputs) == 1


def test_autoguide_composition_trains():
    model = SAMSVAEModel(12, 5, 3, n_hidden=16, mask_prior_prob=0.2)
    q = ComposedGuide(model, autoguide=AutoNormal, **STATS, n_hidden=16)
    check_guide(model, q, make_batch())
    assert loss_drops(model, q, "trace")


class PointMassGuide(PyroModule):
    """A user-written guide: point masses for the globals, a linear encoder for z_basal."""

    def __init__(self, model):
        super().__init__()
        self.T, self.K = model.n_perturbations, model.n_latent
        self.E_map = torch.nn.Parameter(torch.zeros(self.T, self.K))
        self.mask_logits = torch.nn.Parameter(torch.zeros(self.T, self.K))
        self.encode = torch.nn.Linear(model.n_genes, 2 * self.K)

    def forward(self, batch):
        with perturbations_plate(self.T):
            pyro.sample(MASK, dist.Bernoulli(logits=self.mask_logits).to_event(1))
            pyro.sample(E, dist.Delta(self.E_map).to_event(1))
        loc, log_scale = self.encode(torch.log1p(batch["x"])).chunk(2, -1)
        with cells_plate(batch):
            pyro.sample(Z_BASAL, dist.Normal(loc, log_scale.exp()).to_event(1))


def test_user_written_guide_from_a_factory_trains_two_steps():
    model = SAMSVAEModel(12, 5, 3, n_hidden=16)
    q = make_guide(lambda m, **stats: PointMassGuide(m), model, **STATS)
    check_guide(model, q, make_batch())
    check_estimator("tracegraph", q, make_batch())
    trainer = SVITrainer(model, q, estimator="tracegraph", n_particles=2, lr=1e-2)
    before = q.E_map.detach().clone()
    for _ in range(2):
        assert torch.isfinite(torch.tensor(trainer.train_step(make_batch())))
    assert not torch.equal(before, q.E_map)


def test_guide_missing_a_site_is_named_in_the_error():
    model = SAMSVAEModel(12, 5, 3, n_hidden=16)

    def bad_guide(batch):
        with cells_plate(batch):
            pyro.sample(Z_BASAL, dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("z_extra", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"missing sites \['E', 'mask'\], extra sites \['z_extra'\]"):
        check_guide(model, bad_guide, make_batch())


def test_unknown_guide_name_is_a_clear_error():
    model = SAMSVAEModel(12, 5, 3, n_hidden=16)
    with pytest.raises(ValueError, match="guide='fancy' is not registered"):
        make_guide("fancy", model, **STATS)

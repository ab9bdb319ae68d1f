import pytest
from pyro import poutine

from samsvae_pyro.infer.schedules import LatentScale, Linear, make_schedules
from samsvae_pyro.models.plates import E, MASK, X, Z_BASAL
from tests.conftest import small_model

FAST = dict(batch_size=64, lr=1e-2, progress=False, val_every=100)


def test_linear_schedule_interpolates_then_holds():
    schedule = Linear(2.0, 0.5, 10)
    assert [schedule(s) for s in (0, 5, 10, 50)] == [2.0, 1.25, 0.5, 0.5]
    assert make_schedules({"kl_weight": 0.3})["kl_weight"](7) == 0.3


@pytest.mark.parametrize("spec", [{"temperature": 1.0}, {"kl_weight": (0.0, 1.0)}, {"kl_weight": "warm"}])
def test_bad_schedules_are_rejected_with_the_valid_choices(spec):
    with pytest.raises(ValueError, match="schedule|Schedule"):
        make_schedules(spec)


def test_latent_scale_weights_latent_sites_and_leaves_the_likelihood_alone(registered):
    model = small_model(registered)
    batch = model.example_batch(4)
    with LatentScale(0.5, global_weight=4.0):
        guide_tr = poutine.trace(model.guide).get_trace(batch)
        model_tr = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(batch)
    assert model_tr.nodes[E]["scale"] == pytest.approx(2.0) and guide_tr.nodes[MASK]["scale"] == pytest.approx(2.0)
    assert model_tr.nodes[Z_BASAL]["scale"] == pytest.approx(0.5 * model_tr.nodes[X]["scale"])
    assert guide_tr.nodes[Z_BASAL]["scale"] == pytest.approx(model_tr.nodes[Z_BASAL]["scale"])


def test_trainer_follows_the_temperature_schedule_and_keeps_the_plain_elbo_for_validation(registered):
    model = small_model(registered)
    seen = []
    model.train(max_steps=12, schedules={"mask_temperature": (2.0, 0.5, 10), "kl_weight": (0.0, 1.0, 10)},
                callback=lambda t: seen.append((t.modules["guide"].mask.temperature, t.kl_weights[0])), **FAST)
    assert seen[0] == (2.0, 0.0) and seen[5] == (pytest.approx(1.25), pytest.approx(0.5)) and seen[-1] == (0.5, 1.0)
    assert model.trainer.kl_weights == (1.0, 1.0)


def test_lr_globals_puts_the_global_variational_parameters_in_their_own_group(registered):
    model = small_model(registered, guide="mean_field")
    model.train(max_steps=1, lr_globals=0.05, **FAST)
    groups = model.trainer.optimizer.param_groups
    globals_ = {id(p) for p in model.guide.global_parameters()}
    assert [g["lr"] for g in groups] == [1e-2, 0.05]
    assert {id(p) for p in groups[1]["params"]} == globals_
    assert {id(p) for p in model.guide.encoder.parameters()} <= {id(p) for p in groups[0]["params"]}
    assert id(model.guide.mask.logits) in globals_ and id(model.guide.E_loc) in globals_


def test_a_learned_mask_prior_probability_moves_and_a_fixed_one_does_not(registered):
    learned = small_model(registered, learn_mask_prior=True, mask_prior_prob=0.2)
    fixed = small_model(registered, mask_prior_prob=0.2)
    for model in (learned, fixed):
        model.train(max_steps=30, **FAST)
    assert abs(float(learned.model.mask_prior_prob.detach()) - 0.2) > 1e-3
    assert float(fixed.model.mask_prior_prob) == pytest.approx(0.2)
    assert "mask_prior_logit" not in dict(fixed.model.named_parameters())

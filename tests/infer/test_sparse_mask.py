"""Sparse-mask inference: the exact latent rotation, the sparsest-rotation search, the constraint's dual update."""

import numpy as np
import pytest
import torch
from pyro import poutine

from samsvae_pyro.guides import CorrelatedGuide, MeanFieldGuide
from samsvae_pyro.infer.rotation import rotate_latent_space, sparse_rotation
from samsvae_pyro.infer.sparse_mask import SparsityConstraint, dual_update, inference_hooks
from samsvae_pyro.models import SAMSVAEModel
from samsvae_pyro.models.plates import E, MASK, Z_BASAL
from tests.conftest import make_batch, small_model

K = 3


def _pair(guide_class, subtract_offset: bool, isotropic: bool):
    """A randomised model and guide in float64, mask surely on; variances isotropic when asked."""
    torch.manual_seed(0)
    model = SAMSVAEModel(12, 5, K, n_hidden=16, mask_prior_prob=0.2).double()
    guide = guide_class(model, x_mean=torch.zeros(12), x_std=torch.ones(12), n_hidden=16,
                        subtract_offset=subtract_offset).double()
    with torch.no_grad():
        guide.mask.logits.fill_(40.0)
        for p in guide.parameters():
            if p.ndim == 2 and p is not guide.mask.logits:
                p.add_(0.3 * torch.randn_like(p))
        if isotropic:
            heads = [guide.encoder.net.output]
            heads += [guide.embedding_net.output] if hasattr(guide, "embedding_net") else []
            for head in heads:
                head.weight[K:].zero_()
                head.bias[K:].fill_(-1.0)
            if hasattr(guide, "E_log_scale"):
                guide.E_log_scale.fill_(-0.7)
    return model, guide


def _log_terms(model, guide, batch, values=None):
    """log p(x, latents) and log q(latents) at the guide's draws (or at the given latent values)."""
    if values is not None:  # replay the guide at these values: they stay sampled sites, scored by q
        template = poutine.trace(guide).get_trace(batch)
        for name, value in values.items():
            template.nodes[name]["value"] = value
        guide = poutine.replay(guide, trace=template)
    guide_trace = poutine.trace(guide).get_trace(batch)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
    latents = {name: guide_trace.nodes[name]["value"] for name in (E, MASK, Z_BASAL)}
    return float(model_trace.log_prob_sum().detach()), float(guide_trace.log_prob_sum().detach()), latents


def _before_and_after_rotation(model, guide, seed: int):
    """The batch, and (log p, log q, latents) at the guide's draws before and at the rotated draws after."""
    batch = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in make_batch().items()}
    before = _log_terms(model, guide, batch)
    latents = before[2]
    rotation = torch.linalg.qr(torch.randn(K, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    rotate_latent_space(model, guide, rotation)
    rotated = {E: latents[E] @ rotation, Z_BASAL: latents[Z_BASAL] @ rotation, MASK: latents[MASK]}
    return batch, before, _log_terms(model, guide, batch, rotated)


@pytest.mark.parametrize("guide_class", [MeanFieldGuide, CorrelatedGuide])
@pytest.mark.parametrize("subtract_offset", [True, False])
def test_exact_rotation_leaves_the_elbo_of_fixed_draws_unchanged(guide_class, subtract_offset):
    model, guide = _pair(guide_class, subtract_offset, isotropic=True)
    batch, (log_p, log_q, latents), (after_p, after_q, _) = _before_and_after_rotation(model, guide, seed=3)
    assert after_p == pytest.approx(log_p, rel=1e-10, abs=1e-8)
    assert after_q == pytest.approx(log_q, rel=1e-10, abs=1e-8)
    assert after_p - after_q == pytest.approx(log_p - log_q, rel=1e-10, abs=1e-8)
    # the rotation did change the parameters (the draws at the unrotated values score differently)
    assert _log_terms(model, guide, batch, latents)[0] != pytest.approx(log_p, rel=1e-6)


def test_model_terms_are_exact_for_any_variances():
    model, guide = _pair(MeanFieldGuide, True, isotropic=False)
    _, before, after = _before_and_after_rotation(model, guide, seed=4)
    assert after[0] == pytest.approx(before[0], rel=1e-10)


def test_sparse_rotation_undoes_a_rotation_of_sparse_effects():
    rng = np.random.default_rng(0)
    truth = (rng.random((24, 4)) < 0.3) * rng.choice([-3.0, 3.0], size=(24, 4))
    truth[np.arange(4), np.arange(4)] = 3.0
    truth = torch.as_tensor(truth)
    q = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64))[0]
    recovered = truth @ q @ sparse_rotation(truth @ q, restarts=6)
    # the same sparse matrix up to signed permutation of the columns: every entry is 0 or +-3
    assert torch.allclose(recovered.abs().round(), recovered.abs(), atol=0.02)
    assert int((recovered.abs() > 1.5).sum()) == int((truth != 0).sum())
    with pytest.raises(ValueError, match="objective"):
        sparse_rotation(truth, objective="l2")


def test_dual_update_on_hand_made_numbers():
    assert dual_update(0.5, 0.1, 2.0) == pytest.approx(0.7)
    assert dual_update(3.0, -0.01, 2.0) == 0.0  # reset when the constraint holds
    multiplier = 0.0
    for violation, expected in [(0.2, 2.0), (0.1, 3.0), (0.0, 0.0), (0.3, 3.0)]:
        multiplier = dual_update(multiplier, violation, 10.0)
        assert multiplier == pytest.approx(expected)


def test_constraint_bound_anneals_and_its_penalty_pushes_the_logits_down():
    constraint = SparsityConstraint(0.2, (10, 30), dual_lr=1.0)
    assert [constraint.bound(s) for s in (0, 10, 20, 30, 99)] == pytest.approx([1.0, 1.0, 0.6, 0.2, 0.2])

    class Trainer:  # the two attributes the hook reads
        step = 40
        modules = {"guide": torch.nn.Module()}

    trainer = Trainer()
    trainer.modules["guide"].mask = torch.nn.Module()
    trainer.modules["guide"].mask.logits = torch.nn.Parameter(torch.zeros(4, 5))  # q = 0.5 > 0.2
    assert constraint.penalty(trainer) is None  # multiplier 0
    constraint.after_step(trainer)
    assert constraint.multiplier == pytest.approx(0.3)  # violation 0.5 - 0.2
    constraint.penalty(trainer).backward()
    assert (trainer.modules["guide"].mask.logits.grad > 0).all()  # descent lowers every logit


def test_inference_option_is_checked_before_training_and_freezes_a_hard_mask(registered):
    from samsvae_pyro import CPAVAE

    model = small_model(registered, guide="mean_field")
    with pytest.raises(ValueError, match="not supported"):
        model.train(max_steps=2, progress=False, inference="dense")
    with pytest.raises(ValueError, match="Unknown sparse-mask options"):
        model.train(max_steps=2, progress=False, inference={"targt": 0.2})
    cpa = CPAVAE(registered, n_latent=3, n_hidden=8, device="cpu")
    with pytest.raises(ValueError, match="learned mask"):
        cpa.train(max_steps=2, progress=False, inference="sparse")
    assert model.trainer is None or model.trainer.step == 0
    model.train(max_steps=20, batch_size=64, lr=1e-2, val_every=5, progress=False,
                inference={"teleport": (0.3,), "anneal": (0.3, 0.6), "freeze": 0.7})  # freezing is opt-in
    q = model.mask_probabilities().to_numpy()
    assert np.minimum(q, 1 - q).max() < 1e-4  # frozen: every entry surely on or surely off
    assert model.trainer.best_step > 14  # the checkpoint kept is one after the freeze
    lrs = {id(p): group["lr"] for group in model.trainer.optimizer.param_groups for p in group["params"]}
    guide = model.guide
    assert (lrs[id(guide.mask.logits)], lrs[id(guide.E_loc)], lrs[id(guide.E_log_scale)]) == (3e-2, 1e-2, 1e-2)
    assert len(lrs) == len(list(model.trainer.modules.parameters()))  # every parameter in exactly one group


def test_a_config_or_the_command_line_reaches_the_option():
    from samsvae_pyro.runs.config import parse_overrides, resolve_config

    config = {"data": {"source": "simulate_counts", "setup": {"perturbation_key": "perturbation"}}}
    overrides = parse_overrides(["train.inference=sparse"])  # samsvae train --config FILE --set train.inference=sparse
    assert resolve_config(config, overrides)["train"]["inference"] == "sparse"
    assert resolve_config(config, parse_overrides(["train.inference={target: 0.2}"]))["train"]["inference"] == {
        "target": 0.2}

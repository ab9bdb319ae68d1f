import contextlib
import math

import numpy as np
import pandas as pd
import pytest
import torch

from samsvae_pyro.infer import TrainingDivergedError
from tests.conftest import small_model

FAST = dict(batch_size=64, lr=1e-2, progress=False)


def test_same_seed_gives_the_same_history_bit_for_bit(registered):
    runs = [small_model(registered).train(max_steps=12, val_every=5, seed=3, **FAST) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].drop(columns="seconds"), runs[1].drop(columns="seconds"), check_exact=True)
    assert runs[0]["val_loss"].notna().sum() == 3  # steps 5, 10 and the last


def test_different_seeds_give_different_histories(registered):
    a, b = (small_model(registered).train(max_steps=5, seed=s, **FAST) for s in (0, 1))
    assert not np.array_equal(a["train_loss"], b["train_loss"])


@pytest.mark.parametrize("sampling", ["cells", "blocks"])
def test_resuming_from_a_saved_checkpoint_continues_exactly(registered, tmp_path, sampling):
    straight = small_model(registered).train(max_steps=16, val_every=100, seed=0, sampling=sampling, **FAST)
    first = small_model(registered)
    first.train(max_steps=8, val_every=100, seed=0, sampling=sampling, **FAST)
    n_batches = len(first.loader(first.data.indices("train"), batch_size=FAST["batch_size"]))
    assert 0 < first.trainer.batch_in_epoch < n_batches  # stopped mid-epoch
    first.save(tmp_path / "run")
    resumed = type(first).load(tmp_path / "run", registered, device="cpu")
    history = resumed.train(max_steps=8, val_every=100, seed=0, sampling=sampling, **FAST)
    assert list(history["step"]) == list(range(1, 17))
    np.testing.assert_array_equal(history["train_loss"].to_numpy(), straight["train_loss"].to_numpy())


@pytest.mark.parametrize("off_cpu_path", [False, True])
def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_best_checkpoint(registered, off_cpu_path, monkeypatch):
    if off_cpu_path:  # the loss kept on the device, read with the gradient norm (as on CUDA)
        from samsvae_pyro.infer.estimators import loss_on_device
        from samsvae_pyro.infer.trainer import SVITrainer

        monkeypatch.setattr(SVITrainer, "_loss_context", lambda self: loss_on_device(self.elbo))
    model = small_model(registered)

    def poison(trainer):
        if trainer.step == 4:
            with torch.no_grad():
                model.guide.encoder.net.output.weight.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match=r"diverged at step 5 .*best checkpoint \(step 4\) was restored"):
        model.train(max_steps=10, val_every=2, seed=0, callback=poison, **FAST)
    assert torch.isfinite(model.guide.encoder.net.output.weight).all()


def test_early_stopping_stops_when_validation_stalls(registered):
    history = small_model(registered).train(max_steps=50, val_every=1, early_stopping_patience=2, seed=0,
                                            batch_size=64, lr=1e-30, progress=False)  # lr 0 is rejected
    assert len(history) == 3  # the first validation sets the best; two more without improvement stop
    assert math.isfinite(history["val_loss"].iloc[-1])


@pytest.mark.parametrize("option, message", [
    (dict(estimator="svgd"), "estimator='svgd'"), (dict(weighting="uniform"), "weighting='uniform'"),
    (dict(n_particles=0), "n_particles"),
])
def test_bad_training_options_are_clear_errors(registered, option, message):
    with pytest.raises(ValueError, match=message):
        small_model(registered).train(max_steps=1, **FAST | option)


@pytest.mark.parametrize("estimator", ["trace", "mean_field", "tracegraph"])
def test_loss_kept_on_the_device_is_pyros_float_bit_for_bit(registered, estimator):
    """loss_on_device: the same number as Pyro's float (as a float64 tensor), the same gradients, and Pyro's
    own functions back in place afterwards."""
    import pyro
    import pyro.infer.trace_elbo

    from samsvae_pyro.infer.estimators import loss_on_device, make_elbo

    guide_kwargs = {"mask_gradient": "score"} if estimator == "tracegraph" else {}
    model = small_model(registered, guide_kwargs=guide_kwargs)
    batch, elbo = model.example_batch(32), make_elbo(estimator, n_particles=3)
    results = []
    for on_device in (False, True):
        pyro.set_rng_seed(0)
        pyro.clear_param_store()  # the decaying-average baseline of "tracegraph" lives there
        model.guide.zero_grad(set_to_none=True)
        with loss_on_device(elbo) if on_device else contextlib.nullcontext():
            value = elbo.loss_and_grads(model.model, model.guide, batch)
        results.append((value, [p.grad.clone() for p in model.guide.parameters() if p.grad is not None]))
    (plain, plain_grads), (kept, kept_grads) = results
    assert isinstance(plain, float) and kept.dtype == torch.float64 and kept.dim() == 0
    assert kept.item() == plain
    assert len(kept_grads) == len(plain_grads) > 0 and all(map(torch.equal, kept_grads, plain_grads))
    assert pyro.infer.trace_elbo.torch_item is pyro.infer.util.torch_item


@pytest.mark.parametrize("clip_norm", [100.0, None])
def test_a_training_step_off_the_cpu_copies_from_the_device_once(registered, monkeypatch, clip_norm):
    """On CUDA every copy to the host waits for the queued kernels: a step makes one (loss and gradient norm
    together, for the divergence check). Run here on the CPU with the trainer's off-CPU path, where the NB
    log-probability's large-count check (CPU only) adds one more; same history as the CPU path."""
    from samsvae_pyro.infer.estimators import loss_on_device
    from samsvae_pyro.infer.trainer import SVITrainer

    cpu_history = small_model(registered).train(max_steps=7, val_every=1000, seed=0, clip_norm=clip_norm, **FAST)
    monkeypatch.setattr(SVITrainer, "_loss_context", lambda self: loss_on_device(self.elbo))
    model, copies = small_model(registered), []
    counting = {"on": False}
    for name in ("item", "__bool__", "__float__", "__int__", "tolist", "numpy"):
        method = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _m=method, _n=name, **k: (
            copies.append(_n) if counting["on"] else None, _m(self, *a, **k))[1])

    def after_step(trainer):
        counting["on"] = trainer.step < 6  # steps 2..6: after Pyro's checks of step 1, before the validation of 7

    history = model.train(max_steps=7, val_every=1000, seed=0, clip_norm=clip_norm, callback=after_step, **FAST)
    assert copies.count("tolist") == 5 and len(copies) == 2 * 5, copies
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), cpu_history.drop(columns="seconds"), check_exact=True)

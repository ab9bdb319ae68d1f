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


def test_resuming_from_a_saved_checkpoint_continues_exactly(registered, tmp_path):
    straight = small_model(registered).train(max_steps=16, val_every=100, seed=0, **FAST)
    first = small_model(registered)
    first.train(max_steps=8, val_every=100, seed=0, **FAST)
    first.save(tmp_path / "run")
    resumed = type(first).load(tmp_path / "run", registered, device="cpu")
    history = resumed.train(max_steps=8, val_every=100, seed=0, **FAST)
    assert list(history["step"]) == list(range(1, 17))
    np.testing.assert_array_equal(history["train_loss"].to_numpy(), straight["train_loss"].to_numpy())


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_best_checkpoint(registered):
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

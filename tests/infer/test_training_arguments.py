"""Every training argument is checked before the first step (issue 17, item 7)."""

import math

import pytest
import torch

from tests.conftest import small_model

BAD = [
    ("max_steps", -5), ("max_steps", math.nan), ("max_steps", 2.5), ("max_steps", True),
    ("val_every", 0), ("early_stopping_patience", 0), ("batch_size", 0), ("n_particles", 0),
    ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("lr", math.inf), ("lr_globals", 0.0),
    ("weight_decay", -1.0), ("clip_norm", -1.0), ("clip_norm", 0.0), ("clip_norm", math.nan),
    ("seed", -1), ("devices", 0), ("bootstrap", -1), ("bootstrap", 1.5),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_bad_argument_is_a_value_error_and_changes_nothing(registered, name, value):
    model = small_model(registered)
    before = {k: v.clone() for k, v in model.guide.state_dict().items()}
    with pytest.raises(ValueError, match=f"{name}="):
        model.train(**{"max_steps": 3, "progress": False, name: value})
    after = model.guide.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.history is None


def test_zero_steps_and_no_clipping_are_allowed(registered):
    model = small_model(registered)
    assert len(model.train(max_steps=0, progress=False)) == 0
    assert len(model.train(max_steps=2, clip_norm=None, batch_size=64, progress=False)) == 2


def test_the_trainer_checks_its_own_arguments(registered):
    from samsvae_pyro.infer import SVITrainer

    model = small_model(registered)
    with pytest.raises(ValueError, match="clip_norm=-1"):
        SVITrainer(model.model, model.guide, clip_norm=-1)
    trainer = SVITrainer(model.model, model.guide)
    with pytest.raises(ValueError, match="val_every=0"):
        trainer.fit(model.loader("train"), max_steps=3, val_every=0, progress=False)
    assert trainer.step == 0

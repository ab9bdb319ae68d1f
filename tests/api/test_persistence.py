"""A saved model on disk: damaged files give one clear error, an interrupted save keeps the previous model,
and a model with a custom guide saves and loads when the same factory is passed again."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from samsvae_pyro import SAMSVAE
from samsvae_pyro.api import SavedModelError
from samsvae_pyro.api.persistence import CHECKPOINT, CHECKSUM, MODEL_CONFIG
from samsvae_pyro.files import previous_version
from samsvae_pyro.guides import MeanFieldGuide
from tests.conftest import small_model

FAST = dict(batch_size=64, lr=1e-2, progress=False, val_every=5)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path):
    path.write_bytes(b"")


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def garbage(path):
    path.write_bytes(b"\x80\x03not a file of this kind")


DAMAGES = {"truncated": truncate, "empty": empty, "flipped byte": flip_byte, "garbage": garbage}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_adata):
    """(registered AnnData, trained model, its saved directory)."""
    adata = tiny_adata.copy()
    SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control_label="non-targeting", split_key="split")
    model = small_model(adata)
    model.train(max_steps=5, **FAST)
    directory = model.save(tmp_path_factory.mktemp("saved") / "run")
    return adata, model, directory


def copy_of(directory, tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    for name in (CHECKPOINT, MODEL_CONFIG):
        (target / name).write_bytes((directory / name).read_bytes())
    return target


def parameters(model) -> dict[str, torch.Tensor]:
    return {**model.model.state_dict(), **{f"guide.{k}": v for k, v in model.guide.state_dict().items()}}


def assert_same_parameters(a, b):
    first, second = parameters(a), parameters(b)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("name", [CHECKPOINT, MODEL_CONFIG])
def test_a_damaged_file_is_one_error_naming_it(saved, tmp_path, name, damage):
    adata, _, directory = saved
    run = copy_of(directory, tmp_path)
    DAMAGES[damage](run / name)
    with pytest.raises(SavedModelError) as error:
        SAMSVAE.load(run, adata, device="cpu")
    message = str(error.value)
    assert str(run / name) in message and ("re-run the training" in message or "incompatible" in message)
    assert isinstance(error.value, ValueError)


def test_a_checkpoint_saved_without_a_checksum_still_gives_the_clear_error(saved, tmp_path):
    adata, _, directory = saved
    run = copy_of(directory, tmp_path)
    config = json.loads((run / MODEL_CONFIG).read_text())
    del config[CHECKSUM]  # as written before checksums existed
    (run / MODEL_CONFIG).write_text(json.dumps(config))
    assert_same_parameters(SAMSVAE.load(run, adata, device="cpu"), saved[1])
    truncate(run / CHECKPOINT)
    with pytest.raises(SavedModelError, match="cannot be read"):
        SAMSVAE.load(run, adata, device="cpu")


def test_config_and_checkpoint_of_different_saves_do_not_mix(saved, tmp_path):
    adata, model, directory = saved
    other = small_model(adata, seed=1)
    other.save(tmp_path / "other")
    run = copy_of(directory, tmp_path)
    (run / CHECKPOINT).write_bytes((tmp_path / "other" / CHECKPOINT).read_bytes())
    with pytest.raises(SavedModelError, match="checksum"):
        SAMSVAE.load(run, adata, device="cpu")


@pytest.mark.parametrize("failing", [1, 2])
def test_a_save_interrupted_at_either_file_leaves_the_previous_model(saved, tmp_path, monkeypatch, failing):
    adata, model, directory = saved
    run = copy_of(directory, tmp_path)
    newer = small_model(adata, seed=2)
    real_replace, calls = os.replace, []

    def replace(source, target):
        calls.append(target)
        if len(calls) == failing:
            raise OSError("simulated failure while renaming")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        newer.save(run, overwrite=True)
    monkeypatch.undo()
    assert len(calls) >= failing
    assert_same_parameters(SAMSVAE.load(run, adata, device="cpu"), model)
    assert sorted(path.name for path in run.iterdir()) == [CHECKPOINT, MODEL_CONFIG]  # no temporary file left


def small_mean_field(model, **stats):
    """A user's guide factory: the mean-field guide with a small encoder."""
    return MeanFieldGuide(model, **stats, n_hidden=8)


def test_a_custom_guide_round_trips_with_the_same_factory(registered, tmp_path):
    model = small_model(registered, guide=small_mean_field)
    model.train(max_steps=3, **FAST)
    model.save(tmp_path / "custom")
    assert json.loads((tmp_path / "custom" / MODEL_CONFIG).read_text())["guide"] == {"custom": "small_mean_field"}
    with pytest.raises(ValueError, match=r"custom guide \(small_mean_field\).*guide=small_mean_field"):
        SAMSVAE.load(tmp_path / "custom", registered, device="cpu")
    loaded = SAMSVAE.load(tmp_path / "custom", registered, guide=small_mean_field, device="cpu")
    assert_same_parameters(loaded, model)
    np.testing.assert_array_equal(loaded.mask_probabilities().to_numpy(), model.mask_probabilities().to_numpy())
    with pytest.raises(SavedModelError, match="do not fit"):  # another guide's parameters
        SAMSVAE.load(tmp_path / "custom", registered, guide=lambda m, **stats: MeanFieldGuide(m, **stats), device="cpu")


def test_load_with_the_wrong_family_names_the_right_one(saved):
    from samsvae_pyro import CPAVAE

    adata, _, directory = saved
    with pytest.raises(ValueError, match="holds a saved SAMSVAE; load it with SAMSVAE.load"):
        CPAVAE.load(directory, adata, device="cpu")


def test_a_save_killed_between_its_renames_still_loads_the_previous_model(saved, tmp_path):
    adata, model, directory = saved
    run = copy_of(directory, tmp_path)
    small_model(adata, seed=3).save(tmp_path / "newer")
    os.link(run / CHECKPOINT, previous_version(run / CHECKPOINT))  # what replace_together keeps until it is done
    os.replace(tmp_path / "newer" / CHECKPOINT, run / CHECKPOINT)  # then killed before renaming config.json
    assert_same_parameters(SAMSVAE.load(run, adata, device="cpu"), model)

"""Training and evaluation from counts on disk (backed .h5ad, .zarr) give the in-memory numbers exactly.

The in-memory model is trained with ``sampling="blocks"``, the scheme that ``"auto"`` picks for counts on disk,
so the batches, and therefore every float operation, are the same: histories, parameters, IWELBO, data ATE and
counterfactual predictions are compared for exact equality.
"""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import pytest

from samsvae_pyro import SAMSVAE
from samsvae_pyro.data import batches, read_backed
from samsvae_pyro.evaluate.ate import data_ate
from tests.conftest import small_model

SETUP = {"perturbation_key": "perturbation", "control_label": "non-targeting", "split_key": "split"}
TRAIN = {"max_steps": 12, "batch_size": 64, "lr": 1e-2, "progress": False, "val_every": 4, "seed": 3}


def _digest(path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture(scope="module")
def paths(tiny_adata, tmp_path_factory):
    root = tmp_path_factory.mktemp("backed")
    tiny_adata.write_h5ad(root / "screen.h5ad")
    tiny_adata.write_zarr(root / "screen.zarr")
    return {"h5ad": root / "screen.h5ad", "zarr": root / "screen.zarr"}


def _fitted(adata, sampling):
    SAMSVAE.setup_anndata(adata, **SETUP)
    model = small_model(adata, threads=1)
    model.train(**TRAIN, sampling=sampling)
    return model


@pytest.fixture(scope="module")
def fitted(tiny_adata, paths):
    """The same model trained in memory (blocks) and from disk (auto), with zarr's blocks set to the others'."""
    digests = {name: _digest(path) for name, path in paths.items()}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batches, "ZARR_BLOCK_SIZE", batches.BLOCK_SIZE)
        patch.setattr(batches, "ZARR_BUFFER_BLOCKS", batches.BUFFER_BLOCKS)
        models = {"memory": _fitted(tiny_adata.copy(), "blocks"),
                  "backed": _fitted(ad.read_h5ad(paths["h5ad"], backed="r"), "auto"),
                  "zarr": _fitted(read_backed(paths["zarr"]), "auto")}
    return models, digests


def _parameters(model):
    return {f"{part}.{k}": v for part in ("model", "guide") for k, v in getattr(model, part).state_dict().items()}


def test_training_from_disk_equals_training_in_memory(fitted, paths):
    models, digests = fitted
    memory = models["memory"]
    for name in ("backed", "zarr"):
        model = models[name]
        for column in ("train_loss", "val_loss"):
            np.testing.assert_array_equal(model.history[column].to_numpy(), memory.history[column].to_numpy())
        theirs = _parameters(memory)
        for key, value in _parameters(model).items():
            assert value.equal(theirs[key]), (name, key)
    assert {name: _digest(path) for name, path in paths.items()} == digests  # the user's files are untouched


def test_evaluation_from_disk_equals_evaluation_in_memory(fitted):
    models, _ = fitted
    memory = models["memory"]
    expected_iwelbo = memory.iwelbo(n_particles=4)
    expected_ate = data_ate(memory.data, chunk_size=7).X  # many sorted row chunks
    expected_cells = memory.predict(["P0"], mode="counterfactual").layers["counts"]
    for name in ("backed", "zarr"):
        model = models[name]
        np.testing.assert_array_equal(model.iwelbo(n_particles=4).to_numpy(), expected_iwelbo.to_numpy())
        np.testing.assert_array_equal(data_ate(model.data, chunk_size=7).X, expected_ate)
        cells = model.predict(["P0"], mode="counterfactual").layers["counts"]
        np.testing.assert_array_equal(np.asarray(cells), np.asarray(expected_cells))


@pytest.mark.slow
def test_evaluate_run_from_disk_writes_the_in_memory_report(fitted, tmp_path):
    from samsvae_pyro.runs import evaluate_run

    models, _ = fitted
    options = {"n_particles": 4, "ate_draws": 4, "ate_samples_per_draw": 4, "plots": False}
    reports = {name: evaluate_run(models[name], tmp_path / name, **options) for name in ("memory", "zarr")}
    assert json.dumps(reports["zarr"], sort_keys=True, default=str) == json.dumps(reports["memory"], sort_keys=True,
                                                                                  default=str)


def test_a_saved_model_loads_onto_an_unregistered_backed_file(fitted, paths, tmp_path):
    models, digests = fitted
    directory = models["memory"].save(tmp_path / "run")
    loaded = SAMSVAE.load(directory, ad.read_h5ad(paths["h5ad"], backed="r"), device="cpu")
    assert type(loaded.data.counts).__name__ == "OnDiskMatrix"
    np.testing.assert_array_equal(loaded.iwelbo(n_particles=4).to_numpy(),
                                  models["memory"].iwelbo(n_particles=4).to_numpy())
    assert _digest(paths["h5ad"]) == digests["h5ad"]

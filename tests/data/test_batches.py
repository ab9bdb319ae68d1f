"""MinibatchLoader: coverage, determinism per (seed, epoch), shapes, dtypes, device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samsvae_pyro.data import MinibatchLoader, build_perturbation_data


@pytest.fixture(scope="module")
def data(sim_counts):
    return build_perturbation_data(
        sim_counts,
        perturbation_key="perturbation",
        control_label="non-targeting",
        split_key="split",
    )


def _epoch(loader):
    return [batch["index"].numpy() for batch in loader]


def test_each_epoch_covers_every_index_once(data):
    indices = data.indices("train")
    loader = MinibatchLoader(data, indices, batch_size=17, seed=1)
    for _ in range(2):
        seen = np.concatenate(_epoch(loader))
        np.testing.assert_array_equal(np.sort(seen), np.sort(indices))
    assert len(loader) == -(-len(indices) // 17)


def test_batches_match_the_data(data):
    loader = MinibatchLoader(data, data.indices("val"), batch_size=32)
    for batch in loader:
        rows = batch["index"].numpy()
        np.testing.assert_array_equal(batch["x"].numpy(), data.counts[rows].toarray())
        np.testing.assert_array_equal(batch["D"].numpy(), data.dosages[rows].toarray())
        np.testing.assert_array_equal(batch["library"].numpy(), data.library_size[rows])
        assert batch["n_cells"] == len(data.indices("val"))


def test_shapes_dtypes_device(data):
    loader = MinibatchLoader(data, data.indices("train"), batch_size=50, device="cpu")
    batch = next(iter(loader))
    assert batch["x"].shape == (50, data.n_genes) and batch["x"].dtype == torch.float32
    assert batch["D"].shape == (50, data.n_perturbations) and batch["D"].dtype == torch.float32
    assert batch["library"].shape == (50,) and batch["library"].dtype == torch.float32
    assert batch["index"].dtype == torch.int64
    assert all(batch[k].device == torch.device("cpu") for k in ("x", "D", "library", "index"))


def test_permutation_is_a_function_of_seed_and_epoch(data):
    indices = data.indices("train")
    first = MinibatchLoader(data, indices, batch_size=40, seed=5)
    epochs = [_epoch(first) for _ in range(3)]
    assert not np.array_equal(epochs[0][0], epochs[1][0])  # epochs advance
    resumed = MinibatchLoader(data, indices, batch_size=40, seed=5)
    resumed.set_epoch(2)
    for a, b in zip(_epoch(resumed), epochs[2], strict=True):
        np.testing.assert_array_equal(a, b)
    other_seed = MinibatchLoader(data, indices, batch_size=40, seed=6)
    assert not np.array_equal(_epoch(other_seed)[0], epochs[0][0])


def test_no_shuffle_and_drop_last(data):
    indices = data.indices("test")
    loader = MinibatchLoader(data, indices, batch_size=25, shuffle=False, drop_last=True)
    batches = _epoch(loader)
    assert len(batches) == len(loader) == len(indices) // 25
    assert all(len(b) == 25 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), indices[: 25 * len(batches)])


def test_dense_counts(make_adata):
    adata = make_adata(["control", "A", "B"] * 10, sparse=False)
    dense = build_perturbation_data(adata, perturbation_key="perturbation")
    batch = next(iter(MinibatchLoader(dense, np.arange(30), batch_size=8)))
    np.testing.assert_array_equal(batch["x"].numpy(), adata.X[batch["index"].numpy()])


@pytest.mark.parametrize(
    ("indices", "kwargs", "message"),
    [
        (np.array([], dtype=np.int64), {}, "non-empty"),
        (np.array([0.5]), {}, "integer"),
        (np.array([10**6]), {}, r"lie in \[0"),
        (np.array([0, 1]), {"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_arguments(data, indices, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MinibatchLoader(data, indices, **kwargs)

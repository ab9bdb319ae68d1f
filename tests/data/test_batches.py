"""MinibatchLoader: coverage, determinism per (seed, epoch), shapes, dtypes, device; the "blocks" sampling."""

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
        (np.array([0, 1]), {"block_size": 0}, "block_size=0"),
        (np.array([0, 1]), {"block_size": 4, "buffer_blocks": 0}, "buffer_blocks=0"),
    ],
)
def test_bad_arguments(data, indices, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MinibatchLoader(data, indices, **kwargs)


# --- the "blocks" sampling: block permutation, buffers read at once, cells shuffled within a buffer

BLOCKS = {"block_size": 7, "buffer_blocks": 3}


def test_blocks_serve_every_cell_once_per_epoch_in_full_batches(data):
    indices = data.indices("train")
    loader = MinibatchLoader(data, indices, batch_size=16, seed=2, **BLOCKS)
    for _ in range(2):
        batches = [batch for batch in loader]
        seen = np.concatenate([b["index"].numpy() for b in batches])
        np.testing.assert_array_equal(np.sort(seen), indices)
        assert all(len(b["index"]) == 16 for b in batches[:-1]) and len(batches) == len(loader)
        assert all(b["n_cells"] == len(indices) for b in batches)


def test_blocks_are_consecutive_cells_and_buffers_are_shuffled(data):
    indices = data.indices("train")
    loader = MinibatchLoader(data, indices, batch_size=16, seed=2, **BLOCKS)
    buffers = loader.block_order(0)
    position = {cell: i for i, cell in enumerate(indices)}
    for buffer in buffers[:-1]:
        blocks = {position[cell] // BLOCKS["block_size"] for cell in buffer}
        assert len(blocks) <= -(-len(buffer) // BLOCKS["block_size"]) + 1  # whole blocks, parts at the two edges
    assert len(buffers[0]) == 32  # 3 blocks of 7 cells, rounded up to whole batches of 16
    served = np.concatenate(buffers)
    assert not np.array_equal(served, indices) and not np.array_equal(np.sort(buffers[0]), buffers[0])


def test_blocks_order_is_a_function_of_seed_and_epoch(data):
    indices = data.indices("train")
    first = MinibatchLoader(data, indices, batch_size=16, seed=5, **BLOCKS)
    epochs = [_epoch(first) for _ in range(3)]
    assert not np.array_equal(epochs[0][0], epochs[1][0])
    resumed = MinibatchLoader(data, indices, batch_size=16, seed=5, **BLOCKS)
    resumed.set_epoch(2)
    for a, b in zip(_epoch(resumed), epochs[2], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_epoch(MinibatchLoader(data, indices, batch_size=16, seed=6, **BLOCKS))[0],
                              epochs[0][0])


def test_blocks_without_shuffle_serve_the_cells_in_order(data):
    indices = data.indices("val")
    ordered = np.concatenate(_epoch(MinibatchLoader(data, indices, batch_size=16, shuffle=False, **BLOCKS)))
    np.testing.assert_array_equal(ordered, indices)


@pytest.mark.parametrize("world_size", [2, 3])
def test_block_shards_are_disjoint_equal_and_cover_the_epoch(data, world_size):
    indices = data.indices("train")
    shards = [np.concatenate(_epoch(MinibatchLoader(data, indices, batch_size=16, seed=1, rank=r,
                                                    world_size=world_size, **BLOCKS)))
              for r in range(world_size)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(indices) // world_size  # train: equal
    union = np.concatenate(shards)
    assert len(np.unique(union)) == len(union) and len(union) > len(indices) - world_size
    served = [np.concatenate(_epoch(MinibatchLoader(data, indices, batch_size=16, seed=1, rank=r, world_size=world_size,
                                                    even_shards=False, **BLOCKS)))
              for r in range(world_size)]
    np.testing.assert_array_equal(np.sort(np.concatenate(served)), indices)  # validation: every cell once
    loaders = [MinibatchLoader(data, indices, batch_size=16, rank=r, world_size=world_size, **BLOCKS)
               for r in range(world_size)]
    assert len({len(loader) for loader in loaders}) == 1  # the same number of steps on every process


def test_block_shard_reads_only_its_own_blocks(data):
    """Process r's cells are a consecutive part of the epoch's block order: they span few blocks."""
    indices = data.indices("train")
    position = {cell: i for i, cell in enumerate(indices)}
    for rank in range(2):
        loader = MinibatchLoader(data, indices, batch_size=16, seed=1, rank=rank, world_size=2, **BLOCKS)
        cells = np.concatenate(loader.block_order(0))
        blocks = {position[cell] // BLOCKS["block_size"] for cell in cells}
        assert len(blocks) <= -(-len(indices) // BLOCKS["block_size"]) // 2 + 2


def test_blocks_drop_last(data):
    indices = data.indices("train")
    loader = MinibatchLoader(data, indices, batch_size=16, drop_last=True, **BLOCKS)
    batches = _epoch(loader)
    assert len(batches) == len(loader) == len(indices) // 16 and all(len(b) == 16 for b in batches)


@pytest.mark.parametrize("sampling", [{}, BLOCKS], ids=["cells", "blocks"])
def test_an_epoch_started_mid_way_serves_the_rest_without_reading_the_skipped_cells(data, sampling):
    indices = data.indices("train")
    loader = MinibatchLoader(data, indices, batch_size=16, seed=4, **sampling)
    assert not sampling or len(loader.block_order(0)[0]) == 32  # buffers of 2 batches
    full = _epoch(loader)
    for start in (1, 2, 5, len(full) - 1):
        resumed = MinibatchLoader(data, indices, batch_size=16, seed=4, **sampling)
        resumed.data = _CountingData(data)
        resumed.set_epoch(0, start=start)
        rest = _epoch(resumed)
        assert len(rest) == len(full) - start
        for a, b in zip(rest, full[start:], strict=True):
            np.testing.assert_array_equal(a, b)
        # cells sampling reads batch by batch; blocks read whole buffers (2 batches of 16 here: 3 blocks of 7)
        unread = start if not sampling else start // 2 * 2
        read = np.concatenate(resumed.data.read)
        if unread:
            assert not np.isin(np.concatenate(full[:unread]), read).any()
        assert len(_epoch(resumed)) == len(full)  # the next epoch starts at its first batch


class _CountingData:
    """A design whose count reads are recorded (row positions of every read)."""

    def __init__(self, data):
        self._data, self.read = data, []
        self.counts = self

    def __getitem__(self, rows):
        self.read.append(np.asarray(rows))
        return self._data.counts[rows]

    def __getattr__(self, name):
        return getattr(self._data, name)

"""Counts on disk (backed .h5ad, .zarr): the same design as in memory, streamed in bounded chunks, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from samsvae_pyro.data import MinibatchLoader, build_perturbation_data, read_backed
from samsvae_pyro.data.batches import BLOCK_SIZE, ZARR_BLOCK_SIZE, block_options
from samsvae_pyro.data.ondisk import OnDiskMatrix, is_on_disk

SETUP = {"perturbation_key": "perturbation", "control_label": "non-targeting", "split_key": "split"}
FIELDS = ("labels", "library_size", "split", "x_mean", "x_std", "obs_names", "var_names")


def _digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


@pytest.fixture(scope="module")
def files(sim_counts, tmp_path_factory):
    """The simulated screen written as .h5ad and .zarr (CSR counts), and their digests."""
    root = tmp_path_factory.mktemp("ondisk")
    h5ad, zarr = root / "screen.h5ad", root / "screen.zarr"
    sim_counts.write_h5ad(h5ad)
    sim_counts.write_zarr(zarr)
    return {"h5ad": h5ad, "zarr": zarr, "digests": {h5ad: _digest(h5ad), zarr: _digest(zarr)}}


def _opened(files):
    return {"backed": ad.read_h5ad(files["h5ad"], backed="r"), "h5ad": read_backed(files["h5ad"]),
            "zarr": read_backed(files["zarr"])}


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def _assert_same_design(ours, theirs):
    for name in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(ours, name)), np.asarray(getattr(theirs, name)), err_msg=name)
    assert (ours.dosages != theirs.dosages).nnz == 0
    assert ours.vocabulary.to_dict() == theirs.vocabulary.to_dict()
    rows = np.arange(ours.n_cells)
    np.testing.assert_array_equal(_dense(ours.counts[rows]), _dense(theirs.counts[rows]))


def test_setup_on_disk_gives_the_in_memory_design(sim_counts, files):
    memory = build_perturbation_data(sim_counts, **SETUP)
    for name, adata in _opened(files).items():
        data = build_perturbation_data(adata, **SETUP)
        assert isinstance(data.counts, OnDiskMatrix), name
        _assert_same_design(data, memory)
    assert {path: _digest(path) for path in files["digests"]} == files["digests"]  # the user's files untouched


def test_streaming_in_tiny_chunks_gives_the_same_statistics(sim_counts, files, monkeypatch):
    memory = build_perturbation_data(sim_counts, **SETUP)
    for module in ("design", "ondisk"):  # 3 rows per chunk and per read span: many chunks and spans
        monkeypatch.setattr(f"samsvae_pyro.data.{module}.CHUNK_VALUES", 3 * sim_counts.n_vars)
    data = build_perturbation_data(read_backed(files["zarr"]), **SETUP)
    _assert_same_design(data, memory)


def test_rows_in_any_order_and_repeated_read_as_in_memory(sim_counts, files):
    counts = build_perturbation_data(read_backed(files["h5ad"]), **SETUP).counts
    rows = np.array([100, 3, 3, 0, 179, 42, 41])
    np.testing.assert_array_equal(_dense(counts[rows]), sim_counts.X[rows].toarray())
    np.testing.assert_array_equal(_dense(counts[5:9]), sim_counts.X[5:9].toarray())


def test_dense_counts_on_disk_read_by_row_slices(sim_counts, tmp_path):
    dense = sim_counts.copy()
    dense.X = sim_counts.X.toarray().astype(np.int32)
    dense.write_h5ad(tmp_path / "dense.h5ad")
    data = build_perturbation_data(read_backed(tmp_path / "dense.h5ad"), **SETUP)
    assert isinstance(data.counts, OnDiskMatrix) and not data.counts.sparse
    _assert_same_design(data, build_perturbation_data(sim_counts, **SETUP))


def test_counts_in_a_layer_stay_on_disk(sim_counts, tmp_path):
    layered = sim_counts.copy()
    layered.layers["counts"] = sim_counts.X.copy()
    layered.X = sp.csr_matrix(sim_counts.X.shape, dtype=np.float32)  # e.g. normalised values elsewhere
    layered.write_zarr(tmp_path / "layered.zarr")
    data = build_perturbation_data(read_backed(tmp_path / "layered.zarr"), **SETUP, layer="counts")
    assert isinstance(data.counts, OnDiskMatrix) and data.counts.name == "adata.layers['counts']"
    _assert_same_design(data, build_perturbation_data(sim_counts, **SETUP))


def test_reference_gene_order_is_applied_on_read(sim_counts, tmp_path):
    reference = build_perturbation_data(sim_counts, **SETUP)
    reordered = sim_counts[:, sim_counts.var_names[::-1]].copy()
    reordered.write_h5ad(tmp_path / "reversed.h5ad")
    data = build_perturbation_data(read_backed(tmp_path / "reversed.h5ad"), **SETUP, reference=reference)
    np.testing.assert_array_equal(_dense(data.counts[np.arange(10)]), sim_counts.X[:10].toarray())


def test_blocks_on_disk_serve_the_same_batches_as_in_memory(sim_counts, files):
    memory = build_perturbation_data(sim_counts, **SETUP)
    disk = build_perturbation_data(read_backed(files["zarr"]), **SETUP)
    loaders = [MinibatchLoader(d, d.indices("train"), batch_size=16, seed=3, block_size=8, buffer_blocks=3)
               for d in (memory, disk)]
    for ours, theirs in zip(*loaders, strict=True):
        for key in ("x", "D", "library", "index"):
            assert ours[key].equal(theirs[key]), key


def test_csc_on_disk_is_rejected_with_the_fix(sim_counts, tmp_path):
    csc = sim_counts.copy()
    csc.X = sp.csc_matrix(sim_counts.X)
    csc.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ValueError, match=r"CSC.*tocsr"):
        build_perturbation_data(ad.read_h5ad(tmp_path / "csc.h5ad", backed="r"), **SETUP)


def test_invalid_counts_on_disk_are_reported_as_in_memory(sim_counts, tmp_path):
    bad = sim_counts.copy()
    bad.X = bad.X.copy()
    bad.X.data[-1] = 2.5  # in the last chunk
    bad.write_zarr(tmp_path / "bad.zarr")
    with pytest.raises(ValueError, match=r"adata.X contains non-integer values \(e.g. 2.5\)"):
        build_perturbation_data(read_backed(tmp_path / "bad.zarr"), **SETUP)


def test_missing_and_damaged_files_are_named(sim_counts, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.h5ad"):
        read_backed(tmp_path / "absent.h5ad")
    (tmp_path / "junk.h5ad").write_bytes(b"not an hdf5 file" * 10)
    with pytest.raises(ValueError, match=r"cannot read .*junk.h5ad"):
        read_backed(tmp_path / "junk.h5ad")
    sim_counts.write_zarr(tmp_path / "damaged.zarr")
    for chunk in (tmp_path / "damaged.zarr" / "X" / "data").glob("[0-9]*"):
        chunk.write_bytes(b"\x00garbage" * 5)  # a chunk that no longer decompresses
    adata = read_backed(tmp_path / "damaged.zarr")
    with pytest.raises(ValueError, match=r"damaged.zarr"):
        build_perturbation_data(adata, **SETUP)


def test_on_disk_counts_survive_pickling(files):
    """A data-parallel run pickles the design into its processes, which reopen the file read-only."""
    import pickle

    counts = build_perturbation_data(read_backed(files["h5ad"]), **SETUP).counts
    copy = pickle.loads(pickle.dumps(counts))
    assert is_on_disk(copy) and copy.shape == counts.shape
    np.testing.assert_array_equal(_dense(copy[np.arange(7)]), _dense(counts[np.arange(7)]))


def test_auto_sampling_uses_blocks_on_disk_only(sim_counts, files):
    def block_size(adata, sampling="auto"):
        return block_options(build_perturbation_data(adata, **SETUP), sampling)["block_size"]

    assert block_size(read_backed(files["h5ad"])) == BLOCK_SIZE
    assert block_size(read_backed(files["zarr"])) == ZARR_BLOCK_SIZE  # larger blocks: a zarr read costs more
    assert block_size(sim_counts) is None and block_size(sim_counts, "blocks") == BLOCK_SIZE
    with pytest.raises(ValueError, match="sampling='rows' is not one of"):
        block_size(sim_counts, "rows")


def test_the_design_built_at_registration_is_reused_until_its_inputs_change(files):
    from samsvae_pyro.data.registry import register, registered_design

    adata = read_backed(files["h5ad"])
    register(adata, **SETUP)
    first = registered_design(adata, count_data=True)
    assert registered_design(adata, count_data=True) is first  # counts read once for setup and model
    assert registered_design(adata, count_data=False) is not first  # another validation
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    perturbed = labels[labels != "non-targeting"][0]
    adata.obs["perturbation"] = np.where(labels == perturbed, "non-targeting", labels)  # edited after setup
    rebuilt = registered_design(adata, count_data=True)
    assert rebuilt is not first
    assert (rebuilt.labels != first.labels).any()
    memory = ad.read_h5ad(files["h5ad"])
    register(memory, **SETUP)
    assert registered_design(memory, count_data=True) is not registered_design(memory, count_data=True)  # in memory: rebuilt

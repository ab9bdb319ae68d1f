"""Count matrices that stay on disk: backed ``.h5ad`` files and ``.zarr`` stores, read by rows on demand.

:func:`read_backed` opens an AnnData whose ``X`` and layers stay on disk (obs, var, uns, obsm, varm in
memory). :class:`OnDiskMatrix` is what :class:`~samsvae_pyro.data.PerturbationData` holds as ``counts``
when the AnnData's counts are on disk (``anndata.read_h5ad(path, backed="r")`` or :func:`read_backed`):
indexing it with sorted row positions reads those rows, and only those, into memory.

A read of many rows is grouped into spans of nearby rows, so that one read of a buffer of cells costs a
few slice reads rather than one per row: unwanted rows between two wanted ones are read and dropped when
they hold at most :data:`GAP_VALUES` stored values (a new read costs about as much as copying that many),
and a span holds at most :data:`CHUNK_VALUES` stored values (a row more if one row alone is larger). A CSR
matrix's row offsets (N + 1 integers) are read once and kept. Files are opened read-only and never written.

Supported storage: CSR (``csr_matrix`` encoding, anndata's sparse dataset) and dense arrays (read by
row slices). A CSC matrix on disk is rejected: reading one cell would read the whole matrix.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp
import zarr
from anndata import AnnData
from anndata.abc import CSCDataset, CSRDataset

CHUNK_VALUES = 1 << 22  # values per chunk of streaming passes (validation, statistics) and per read span
GAP_VALUES = 1 << 12  # stored values between two wanted rows that are read (and dropped) rather than starting a new read
_IN_MEMORY = ("obs", "var", "uns", "obsm", "varm")  # read whole by read_backed
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)  # what h5py / zarr raise on damage


def read_backed(path: str | os.PathLike) -> AnnData:
    """An AnnData whose counts stay on disk: ``X`` and layers are read by rows when needed.

    Parameters
    ----------
    path
        An ``.h5ad`` file or a ``.zarr`` directory written by anndata. Opened read-only, never modified.

    Returns
    -------
    AnnData with ``X`` and ``layers`` on disk (CSR: anndata's sparse dataset; dense: the h5py / zarr
    array) and obs, var, uns, obsm, varm in memory; pairwise matrices (obsp, varp) are not read. Use it
    like any AnnData with ``setup_anndata``, the model, training and evaluation.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When ``path`` cannot be read as an AnnData (damaged, or another format); the message names it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from samsvae_pyro.data import simulate_counts
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "screen.h5ad"
    >>> simulate_counts(n_perturbations=3, cells_per_perturbation=10, n_genes=5, n_ate_samples=10).write_h5ad(path)
    >>> adata = read_backed(path)
    >>> type(adata.X).__name__, adata.shape
    ('_CSRDataset', (40, 5))
    """
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected an .h5ad file or a .zarr directory).")
    try:
        root = zarr.open_group(path, mode="r") if path.is_dir() else h5py.File(path, "r")
        parts = {key: ad.io.read_elem(root[key]) for key in _IN_MEMORY if key in root}
        layers = root.get("layers", {})
        return AnnData(X=_on_disk(root["X"]) if "X" in root else None,
                       layers={key: _on_disk(layers[key]) for key in layers}, **parts)
    except _READ_ERRORS as error:
        raise ValueError(f"cannot read {path} as an AnnData (.h5ad file or .zarr directory written by anndata): "
                         f"{error}. Check the path, or rewrite the file.") from error


def _on_disk(element):
    """A matrix element of an open file as an on-disk object: a sparse dataset or the array itself."""
    if isinstance(element, (h5py.Group, zarr.Group)):
        return ad.io.sparse_dataset(element)
    return element


def is_on_disk(matrix) -> bool:
    """Whether ``matrix`` (an AnnData's X or layer, or a design's counts) is read from disk on demand."""
    return isinstance(matrix, (OnDiskMatrix, CSRDataset, CSCDataset, h5py.Dataset, zarr.Array))


def _location(source) -> tuple[Path, str]:
    """(file or store path, key of the element inside it) of an on-disk matrix."""
    element = source.group if isinstance(source, (CSRDataset, CSCDataset)) else source
    if isinstance(element, (h5py.Group, h5py.Dataset)):
        return Path(element.file.filename).resolve(), element.name
    store = element.store
    return Path(str(getattr(store, "root", None) or store.path)).resolve(), element.path  # zarr 3, zarr 2


def _open(path: Path, key: str):
    root = zarr.open_group(path, mode="r") if path.is_dir() else h5py.File(path, "r")
    return _on_disk(root[key])


class OnDiskMatrix:
    """Rows of a count matrix stored on disk, read on demand as float32 (CSR if stored sparse, else dense).

    Parameters
    ----------
    source
        The on-disk matrix: anndata's CSR sparse dataset, or an h5py / zarr array (dense).
    name
        How error messages call the matrix, e.g. ``"adata.X"``.
    genes
        Positions of the stored columns to keep, in order (``None``: all).

    Shapes
    ------
    shape : (N, G), G the kept genes. ``matrix[rows]`` : (len(rows), G), rows in the order given.

    Raises
    ------
    ValueError
        For a CSC matrix (naming the fix), and, on a read, for a damaged file (naming it).
    """

    def __init__(self, source, *, name: str = "adata.X", genes: np.ndarray | None = None) -> None:
        if isinstance(source, CSCDataset):
            raise ValueError(  # noqa: TRY004 (a layout of the data, not a wrong argument type)
                f"{name} is stored on disk as CSC (compressed by gene), so reading the counts of some cells would "
                "read the whole matrix. Rewrite it with cells as rows (CSR), e.g. adata = anndata.read_h5ad(path); "
                "adata.X = adata.X.tocsr(); adata.write_h5ad(new_path), or read it into memory (no backed=)."
            )
        self.source, self.name, self.genes = source, name, genes
        self.path, self.key = _location(source)
        self.storage = "zarr" if self.path.is_dir() else "hdf5"
        self.sparse = isinstance(source, CSRDataset)
        self._indptr: np.ndarray | None = None  # (N + 1,) row offsets of a CSR matrix, read on first use
        if self.sparse:  # handles kept: looking an array up in an HDF5 group costs more than a small read
            self._data, self._indices = source.group["data"], source.group["indices"]
        self.stored_dtype = np.dtype(source.dtype)
        self.dtype = np.dtype(np.float32)
        n_cells, n_stored = source.shape
        self.shape = (n_cells, n_stored if genes is None else len(genes))

    def __reduce__(self):  # processes of a data-parallel run reopen the file (h5py handles do not pickle)
        return _reopen, (self.path, self.key, self.name, self.genes)

    def __repr__(self) -> str:
        kind = "CSR" if self.sparse else "dense"
        return f"OnDiskMatrix({self.path}:{self.key}, {kind} {self.stored_dtype}, shape={self.shape})"

    def __getitem__(self, key) -> sp.csr_matrix | np.ndarray:
        """Rows ``key`` (a slice with step 1, or integer positions in any order); ``[:, genes]`` keeps genes."""
        if isinstance(key, tuple):
            rows, genes = key
            if rows != slice(None):
                raise IndexError("index an OnDiskMatrix by rows, or by [:, genes] to keep some genes.")
            kept = np.asarray(genes) if self.genes is None else self.genes[np.asarray(genes)]
            return OnDiskMatrix(self.source, name=self.name, genes=kept)
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("row slices of an OnDiskMatrix must have step 1.")
            key = np.arange(start, stop)
        rows = np.asarray(key, dtype=np.int64).ravel()
        wanted, inverse = np.unique(rows, return_inverse=True)
        try:
            block = self._read_sparse(wanted) if self.sparse else self._read_dense(wanted)
        except _READ_ERRORS as error:
            where = f"rows {wanted[0]}..{wanted[-1]}" if len(wanted) else "the row offsets"
            raise ValueError(f"cannot read {where} of {self.name} from {self.path} (key {self.key!r}): {error}. "
                             "The file is damaged or was changed while in use; rewrite it.") from error
        if self.genes is not None:
            block = block[:, self.genes]
        return block if len(wanted) == len(rows) and (np.diff(rows) > 0).all() else block[inverse.ravel()]

    def _read_sparse(self, wanted: np.ndarray) -> sp.csr_matrix:
        """Rows ``wanted`` (sorted, distinct) of a CSR matrix, read span by span from its data and indices."""
        if self._indptr is None:
            self._indptr = np.asarray(self.source.group["indptr"][:], dtype=np.int64)
        begin, end = self._indptr[wanted], self._indptr[wanted + 1]
        data, indices = [], []
        for i, j in _spans(begin, end):
            first, last = begin[i], end[j - 1]
            keep = slice(None) if (end[i : j - 1] == begin[i + 1 : j]).all() else \
                _ranges(begin[i:j] - first, end[i:j] - first)
            data.append(self._data[first:last][keep])
            indices.append(self._indices[first:last][keep])
        offsets = np.r_[0, np.cumsum(end - begin)]
        shape = (len(wanted), self.source.shape[1])
        if not data:
            return sp.csr_matrix(shape, dtype=self.dtype)
        return sp.csr_matrix((np.concatenate(data).astype(self.dtype, copy=False), np.concatenate(indices), offsets),
                             shape=shape)

    def _read_dense(self, wanted: np.ndarray) -> np.ndarray:
        """Rows ``wanted`` (sorted, distinct) of a dense matrix, read by row slices."""
        width = self.source.shape[1]
        parts = [np.zeros((0, width), dtype=self.dtype)]
        for i, j in _spans(wanted * width, (wanted + 1) * width):
            lo, hi = wanted[i], wanted[j - 1] + 1
            block = np.asarray(self.source[lo:hi], dtype=self.dtype)
            parts.append(block if hi - lo == j - i else block[wanted[i:j] - lo])
        return np.concatenate(parts) if len(parts) > 2 else parts[-1]


def _spans(begin: np.ndarray, end: np.ndarray):
    """(i, j): rows i..j-1 (given by the offsets of their first and past-last stored values) are read at once.

    A new read starts where more than ``GAP_VALUES`` unwanted values separate two rows, or where a read would
    exceed ``CHUNK_VALUES`` values (it still holds at least one row).
    """
    starts = np.r_[0, np.flatnonzero(begin[1:] - end[:-1] > GAP_VALUES) + 1, len(begin)]
    for run_start, run_stop in itertools.pairwise(starts):
        i = run_start
        while i < run_stop:
            j = i + max(1, int(np.searchsorted(end[i:run_stop], begin[i] + CHUNK_VALUES, side="right")))
            yield i, j
            i = j


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, stop) over the pairs, without a Python loop."""
    lengths = stops - starts
    ends = np.cumsum(lengths)
    return np.arange(ends[-1]) - np.repeat(ends - lengths - starts, lengths)


def _reopen(path: Path, key: str, name: str, genes: np.ndarray | None) -> OnDiskMatrix:
    return OnDiskMatrix(_open(path, key), name=name, genes=genes)

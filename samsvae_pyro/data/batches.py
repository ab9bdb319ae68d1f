"""Minibatches of a :class:`PerturbationData` as :class:`~samsvae_pyro._typing.Batch` dicts.

Only the rows of the current batch are densified. Within a batch, rows are taken in increasing
position order (slicing a CSR matrix with sorted rows is faster), and ``index`` lists the rows in
that same order, so ``x[b]``, ``D[b]``, ``library[b]`` always belong to cell ``index[b]``.
Batch membership is what the shuffle decides; the order inside a batch carries no meaning.

Two ways to draw an epoch (:data:`SAMPLINGS`):

- ``"cells"`` (default for counts in memory): a uniform permutation of the served cells; each batch
  reads its own rows.
- ``"blocks"`` (default for counts on disk, the scheme of scDataset and scverse's annbatch): the served
  cells, in their given order, are cut into blocks of ``block_size`` consecutive cells (neighbouring
  rows on disk); each epoch permutes the blocks, reads a buffer of ``buffer_blocks`` blocks in one
  sorted read, shuffles the cells within the buffer and serves its batches. A read then costs a few
  slice reads instead of one per cell, at the price of batches drawn from about ``buffer_blocks``
  places of the file rather than from everywhere. Defaults (:func:`block_options`): in memory and in
  HDF5 (``.h5ad``), blocks of :data:`BLOCK_SIZE` = 64 cells and buffers of :data:`BUFFER_BLOCKS` = 64
  blocks (4,096 cells, 8 batches of 512: a batch holds about 8 cells of each of 64 random places; on a
  file sorted by condition, about 64 conditions); in zarr, where every read has a fixed cost of one to
  two milliseconds, blocks of :data:`ZARR_BLOCK_SIZE` = 512 cells and buffers of 32 blocks (annbatch's
  defaults; 16,384 cells, a batch from 32 places).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

import numpy as np
import scipy.sparse as sp
import torch

from samsvae_pyro._typing import Batch, Sampling
from samsvae_pyro.data.design import PerturbationData
from samsvae_pyro.data.ondisk import is_on_disk

SAMPLINGS = get_args(Sampling)
BLOCK_SIZE, BUFFER_BLOCKS = 64, 64  # cells per block, blocks per buffer (read at once, shuffled together)
ZARR_BLOCK_SIZE, ZARR_BUFFER_BLOCKS = 512, 32  # zarr: fewer, larger reads (each costs 1-2 ms)


class MinibatchLoader:
    """Seeded epochs of minibatches over a subset of cells.

    The permutation of epoch e is a pure function of (seed, e): iterating uses the current epoch
    and then advances it by one, and :meth:`set_epoch` sets the epoch of the next iteration, so a
    run resumed at epoch e sees exactly the batches it would have seen.

    Parameters
    ----------
    data
        The design to draw from.
    indices
        Row positions of the cells to serve, e.g. ``data.indices("train")``.
    batch_size
        Cells per batch (the last batch may be smaller unless ``drop_last``).
    shuffle
        Whether to permute the cells every epoch; if False, batches follow ``indices``.
    seed
        Seed of the permutations.
    block_size
        ``None``: the "cells" sampling (module docstring); a number: the "blocks" sampling with blocks
        of that many consecutive served cells (see :func:`block_options`).
    buffer_blocks
        Blocks per buffer of the "blocks" sampling; a buffer is rounded up to whole batches.
    device
        Where the tensors are placed (default CPU).
    drop_last
        Drop a final batch smaller than ``batch_size``.
    rank, world_size
        Serve only process ``rank``'s shard of every epoch's order (data-parallel training, see
        :func:`shard`); ``n_cells`` stays the number of all served cells (the full cells plate).
    even_shards
        With ``world_size > 1``: give every process the same number of cells (training, where the
        processes step together); ``False`` serves every cell once (validation, evaluation). With
        blocks, process r takes the r-th of ``world_size`` consecutive parts of the epoch's block order,
        so it reads only its own blocks.

    Shapes
    ------
    x : (B, G) float32
    D : (B, T) float32
    library : (B,) float32
    index : (B,) int64

    Examples
    --------
    >>> from samsvae_pyro.data import build_perturbation_data, simulate_counts
    >>> data = build_perturbation_data(simulate_counts(seed=0), perturbation_key="perturbation",
    ...     control_label="non-targeting", split_key="split")
    >>> loader = MinibatchLoader(data, data.indices("train"), batch_size=64)
    >>> batch = next(iter(loader))
    >>> tuple(batch["x"].shape), tuple(batch["D"].shape), batch["n_cells"] == len(loader.indices)
    ((64, 60), (64, 12), True)
    """

    def __init__(
        self,
        data: PerturbationData,
        indices: np.ndarray,
        *,
        batch_size: int = 512,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
        block_size: int | None = None,
        buffer_blocks: int = BUFFER_BLOCKS,
    ) -> None:
        indices = np.asarray(indices)
        if indices.ndim != 1 or len(indices) == 0 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError("indices must be a non-empty 1-d array of integer row positions.")
        if indices.min() < 0 or indices.max() >= data.n_cells:
            raise ValueError(f"indices must lie in [0, {data.n_cells}) (the cells of the data).")
        for name, value in (("batch_size", batch_size), ("block_size", 1 if block_size is None else block_size),
                            ("buffer_blocks", buffer_blocks)):
            if value < 1:
                raise ValueError(f"{name}={value} must be a positive integer.")
        self.data = data
        self.indices = indices.astype(np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.device = torch.device("cpu" if device is None else device)
        self.drop_last = drop_last
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must lie in [0, world_size={world_size}).")
        self.rank, self.world_size, self.even_shards = rank, world_size, even_shards
        self.block_size, self.buffer_blocks = block_size, buffer_blocks
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Make the next iteration epoch ``epoch``, beginning at its batch ``start``.

        The batches before ``start`` are neither read nor served (a run resumed mid-epoch), and the
        batches from ``start`` on are exactly those a full iteration would serve there.
        """
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self) -> int:
        if self.block_size is None:
            n = len(shard(self.indices, rank=self.rank, world_size=self.world_size, even=self.even_shards))
        else:
            n = len(self._part(self.indices))  # a view: nothing allocated
        b = self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self, epoch: int) -> np.ndarray:
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        return shard(order, rank=self.rank, world_size=self.world_size, even=self.even_shards)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        start, self.start = self.start, 0
        if self.block_size is not None:
            yield from self._buffered(epoch, start)
            return
        order = self._order(epoch)
        for b in range(start, len(self)):
            rows = np.sort(order[b * self.batch_size : (b + 1) * self.batch_size])
            yield self._batch(rows, self.data.counts[rows])

    def block_order(self, epoch: int) -> list[np.ndarray]:
        """This process's buffers of epoch ``epoch`` under the "blocks" sampling, in serving order.

        Each buffer lists row positions (entries of ``indices``) in the order they are served; batches
        are its consecutive ``batch_size`` cells. A pure function of (seed, epoch, rank, world_size).
        """
        n, size = len(self.indices), self.block_size
        order = np.arange(n)
        if self.shuffle:
            blocks = np.random.default_rng([self.seed, epoch]).permutation(-(-n // size))
            order = (blocks[:, None] * size + np.arange(size)).ravel()
            order = order[order < n]  # the last block may be short
        order = self._part(order)
        per_buffer = -(-self.buffer_blocks * size // self.batch_size) * self.batch_size
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        buffers = []
        for start in range(0, len(order), per_buffer):
            buffer = order[start : start + per_buffer]
            buffers.append(self.indices[rng.permutation(buffer) if self.shuffle else buffer])
        if self.drop_last and buffers and len(buffers[-1]) % self.batch_size:
            buffers[-1] = buffers[-1][: len(buffers[-1]) // self.batch_size * self.batch_size]
        return [b for b in buffers if len(b)]

    def _part(self, order: np.ndarray) -> np.ndarray:
        """Process ``rank``'s consecutive part of an epoch's order (equal parts with ``even_shards``)."""
        if self.world_size == 1:
            return order
        if self.even_shards:
            size = len(order) // self.world_size
            return order[self.rank * size : (self.rank + 1) * size]
        return np.array_split(order, self.world_size)[self.rank]

    def _buffered(self, epoch: int, start: int) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` from batch ``start`` on; a buffer holding none of them is not read."""
        first = 0  # epoch-wide position of the current buffer's first batch
        for buffer in self.block_order(epoch):
            offsets = range(0, len(buffer), self.batch_size)
            skip = max(0, start - first)  # batches of this buffer before ``start``
            first += len(offsets)
            if skip >= len(offsets):
                continue
            rows = np.sort(buffer)
            block = self.data.counts[rows]  # one sorted read of the whole buffer
            for offset in offsets[skip:]:
                batch = np.sort(buffer[offset : offset + self.batch_size])
                yield self._batch(batch, block[np.searchsorted(rows, batch)])

    def _batch(self, rows: np.ndarray, counts: sp.csr_matrix | np.ndarray) -> Batch:
        """Batch of the cells at ``rows`` (sorted row positions) with their ``counts`` rows."""
        x = counts.toarray() if sp.issparse(counts) else counts  # (B, G)
        return Batch(
            x=self._tensor(x),
            D=self._tensor(self.data.dosages[rows].toarray()),  # (B, T)
            library=self._tensor(self.data.library_size[rows]),  # (B,)
            index=self._tensor(rows),  # (B,)
            n_cells=len(self.indices),
        )

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)


def block_options(data: PerturbationData, sampling: Sampling = "auto") -> dict[str, int | None]:
    """``block_size`` and ``buffer_blocks`` of a :class:`MinibatchLoader` for a sampling name and the storage of
    the counts; ``"auto"``: blocks for counts on disk, cells in memory.

    Examples
    --------
    >>> from samsvae_pyro.data import build_perturbation_data, simulate_counts
    >>> data = build_perturbation_data(simulate_counts(seed=0), perturbation_key="perturbation",
    ...     control_label="non-targeting")
    >>> block_options(data), block_options(data, "blocks")
    ({'block_size': None}, {'block_size': 64, 'buffer_blocks': 64})
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r} is not one of {SAMPLINGS}: 'cells' permutes cells, 'blocks' "
                         "permutes blocks of consecutive cells (for counts on disk), 'auto' chooses by storage.")
    if sampling == "auto":
        sampling = "blocks" if is_on_disk(data.counts) else "cells"
    if sampling == "cells":
        return {"block_size": None}
    if getattr(data.counts, "storage", None) == "zarr":
        return {"block_size": ZARR_BLOCK_SIZE, "buffer_blocks": ZARR_BUFFER_BLOCKS}
    return {"block_size": BLOCK_SIZE, "buffer_blocks": BUFFER_BLOCKS}


def shard(order: np.ndarray, *, rank: int, world_size: int, even: bool = True) -> np.ndarray:
    """Process ``rank``'s share of an ordered array of cells: positions rank, rank + W, rank + 2W, ...

    With ``even``, only the first ``W * (n // W)`` entries are shared out, so every process gets the
    same number of cells (which few are left out changes with every epoch's permutation). The union of
    the processes' b-th batches of size B is then the b-th batch of size W * B of the unsharded order.

    Examples
    --------
    >>> shard(np.arange(7), rank=1, world_size=2), shard(np.arange(7), rank=0, world_size=2, even=False)
    (array([1, 3, 5]), array([0, 2, 4, 6]))
    """
    if world_size == 1:
        return order
    usable = (len(order) // world_size) * world_size if even else len(order)
    return order[:usable][rank::world_size]

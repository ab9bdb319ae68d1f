"""Minibatches of a :class:`PerturbationData` as :class:`~samsvae_pyro._typing.Batch` dicts.

Only the rows of the current batch are densified. Within a batch, rows are taken in increasing
position order (slicing a CSR matrix with sorted rows is faster), and ``index`` lists the rows in
that same order, so ``x[b]``, ``D[b]``, ``library[b]`` always belong to cell ``index[b]``.
Batch membership is what the shuffle decides; the order inside a batch carries no meaning.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from samsvae_pyro._typing import Batch
from samsvae_pyro.data.design import PerturbationData


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
    device
        Where the tensors are placed (default CPU).
    drop_last
        Drop a final batch smaller than ``batch_size``.
    rank, world_size
        Serve only process ``rank``'s shard of every epoch's order (data-parallel training, see
        :func:`shard`); ``n_cells`` stays the number of all served cells (the full cells plate).
    even_shards
        With ``world_size > 1``: give every process the same number of cells (training, where the
        processes step together); ``False`` serves every cell once (validation, evaluation).

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
    ) -> None:
        indices = np.asarray(indices)
        if indices.ndim != 1 or len(indices) == 0 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError("indices must be a non-empty 1-d array of integer row positions.")
        if indices.min() < 0 or indices.max() >= data.n_cells:
            raise ValueError(f"indices must lie in [0, {data.n_cells}) (the cells of the data).")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be a positive integer.")
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
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(shard(self.indices, rank=self.rank, world_size=self.world_size, even=self.even_shards))
        b = self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _order(self, epoch: int) -> np.ndarray:
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, epoch]).permutation(len(order))]
        return shard(order, rank=self.rank, world_size=self.world_size, even=self.even_shards)

    def __iter__(self) -> Iterator[Batch]:
        order = self._order(self.epoch)
        self.epoch += 1
        for b in range(len(self)):
            yield self._batch(np.sort(order[b * self.batch_size : (b + 1) * self.batch_size]))

    def _batch(self, rows: np.ndarray) -> Batch:
        """Batch of the cells at ``rows`` (sorted row positions)."""
        counts = self.data.counts[rows]
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

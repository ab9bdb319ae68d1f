"""Train / validation / test splits of cells (docs/model.md, section 6).

Every function returns one split label per cell, a string array with values in
:data:`SPLITS`. Cells labelled ``"excluded"`` belong to no split. All randomness comes from
``numpy.random.default_rng`` seeded by the ``seed`` / ``split_seed`` argument, so a split is a
pure function of its arguments.

Choices the paper leaves open: the Norman splits' "80/20" cell splits are taken over all cells of
the group at once (not per condition), with ``round`` for the held-out part; the test
combinations are the last ``n - floor(3n/4)`` of the shuffled list, so at f = 0.75 training and
test combinations are exactly complementary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple, get_args

import numpy as np

from samsvae_pyro._typing import SplitName
from samsvae_pyro.data.labels import factorize_members, parse_label

SPLITS: tuple[str, ...] = get_args(SplitName)
SPLIT_DTYPE = "<U8"
_HELD_OUT = 0.2  # the "20" of each 80/20 cell split


def random_split(
    n_cells: int, *, fractions: Sequence[float] = (0.64, 0.16, 0.20), seed: int = 0
) -> np.ndarray:
    """Random cell split into train / val / test.

    Rule: draw a permutation of the cells with ``seed``; the first ``round(f_train N)`` cells
    are "train", the next ``round(f_val N)`` "val", the rest "test".

    Parameters
    ----------
    n_cells
        Number N of cells.
    fractions
        Fractions (train, val, test), non-negative and summing to 1.
    seed
        Seed of the permutation.

    Returns
    -------
    Split label per cell.

    Shapes
    ------
    split : (N,)
    """
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.shape != (3,) or (frac < 0).any() or not np.isclose(frac.sum(), 1.0):
        raise ValueError(
            f"fractions={tuple(fractions)} must be three non-negative numbers (train, val, test) "
            "summing to 1, e.g. (0.64, 0.16, 0.20)."
        )
    perm = np.random.default_rng(seed).permutation(n_cells)
    n_train, n_val = round(frac[0] * n_cells), round(frac[1] * n_cells)
    split = np.full(n_cells, "test", dtype=SPLIT_DTYPE)
    split[perm[:n_train]] = "train"
    split[perm[n_train : n_train + n_val]] = "val"
    return split


class _NormanPools(NamedTuple):
    """Fraction-independent part of both Norman splits.

    rank : (N,) position of the cell's combination in the shuffled combination list, -1 for
        control and single-perturbation cells.
    pool : (N,) "train" / "val" / "test" cell pool ("test" only for combination cells).
    combo_train_order : combination cells of the "train" pool, in shuffled order.
    """

    rank: np.ndarray
    n_combos: int
    pool: np.ndarray
    combo_train_order: np.ndarray


def _floor_fraction(fraction: float, n: int) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} must lie in [0, 1].")
    return math.floor(fraction * n + 1e-9)


def _hold_out(cells: np.ndarray, pool: np.ndarray, label: str) -> np.ndarray:
    """Label the first ``round(20%)`` of shuffled ``cells`` with ``label``; return the rest."""
    n_out = round(_HELD_OUT * len(cells))
    pool[cells[:n_out]] = label
    return cells[n_out:]


def _norman_pools(
    labels: Sequence[str], *, split_seed: int, control_label: str, delimiter: str
) -> _NormanPools:
    parse = partial(parse_label, delimiter=delimiter, control_label=control_label)
    codes, members = factorize_members(labels, parse)
    combos = sorted({m for m in members if len(m) > 1})
    combo_seed, cell_seed = np.random.SeedSequence(split_seed).spawn(2)
    shuffled = [combos[i] for i in np.random.default_rng(combo_seed).permutation(len(combos))]
    position = {c: r for r, c in enumerate(shuffled)}
    rank = np.array([position.get(m, -1) for m in members], dtype=np.int64)[codes]

    cell_rng = np.random.default_rng(cell_seed)
    pool = np.full(len(rank), "train", dtype=SPLIT_DTYPE)
    combo_cells = cell_rng.permutation(np.flatnonzero(rank >= 0))
    combo_train = _hold_out(_hold_out(combo_cells, pool, "test"), pool, "val")
    _hold_out(cell_rng.permutation(np.flatnonzero(rank < 0)), pool, "val")
    return _NormanPools(rank, len(combos), pool, combo_train)


def norman_ood_split(
    labels: Sequence[str],
    *,
    fraction: float,
    split_seed: int = 0,
    control_label: str = "control",
    delimiter: str = "+",
) -> np.ndarray:
    """Norman out-of-distribution combination split.

    Rule (docs/model.md, section 6): shuffle the n distinct combinations with ``split_seed``; the first
    ``floor(fraction n)`` are training combinations, the last ``n - floor(3n/4)`` (25%) are test
    combinations. Combination cells are split 80/20 into a test pool, the rest 80/20 into
    train / val pools. A combination cell is "train" / "val" if its combination is a training
    combination and it is in that pool, "test" if its combination is a test combination and it
    is in the test pool, else "excluded". Control and single-perturbation cells are split 80/20
    into "train" / "val". For a fixed seed, the training combinations (and cells) at a smaller
    fraction are a subset of those at a larger one, and the test cells do not depend on fraction.

    Parameters
    ----------
    labels
        Condition label per cell ("control", "CEBPB", "CBL+CNN1").
    fraction
        Fraction f of combinations in training, in [0, 1].
    split_seed
        Seed of the combination shuffle and of the cell splits.
    control_label, delimiter
        How labels are parsed (see :func:`parse_label`).

    Returns
    -------
    Split label per cell.

    Shapes
    ------
    labels : (N,)
    split : (N,)
    """
    pools = _norman_pools(
        labels, split_seed=split_seed, control_label=control_label, delimiter=delimiter
    )
    n = pools.n_combos
    train_combo = (pools.rank >= 0) & (pools.rank < _floor_fraction(fraction, n))
    test_combo = pools.rank >= (3 * n) // 4  # the last n - floor(3n/4) combinations
    split = np.where(pools.rank < 0, pools.pool, "excluded").astype(SPLIT_DTYPE)
    keep = (train_combo & (pools.pool != "test")) | (test_combo & (pools.pool == "test"))
    split[keep] = pools.pool[keep]
    return split


def norman_data_efficiency_split(
    labels: Sequence[str],
    *,
    fraction: float,
    split_seed: int = 0,
    control_label: str = "control",
    delimiter: str = "+",
) -> np.ndarray:
    """Norman data-efficiency split.

    Rule (docs/model.md, section 6): the same cell pools as :func:`norman_ood_split` (combination cells
    80/20 test, then 80/20 val; control and single cells 80/20 train/val), with every
    combination kept: all combination cells of the val and test pools are "val" / "test", and
    training keeps only the first ``floor(fraction m)`` of the m combination cells of the
    train pool (in seeded shuffled order); the remaining ones are "excluded". Training cells
    are nested across fraction for a fixed seed.

    Parameters
    ----------
    labels
        Condition label per cell.
    fraction
        Fraction f of the combination training cells kept, in [0, 1].
    split_seed
        Seed of the cell splits.
    control_label, delimiter
        How labels are parsed (see :func:`parse_label`).

    Returns
    -------
    Split label per cell.

    Shapes
    ------
    labels : (N,)
    split : (N,)
    """
    pools = _norman_pools(
        labels, split_seed=split_seed, control_label=control_label, delimiter=delimiter
    )
    order = pools.combo_train_order
    split = pools.pool.copy()
    split[order[_floor_fraction(fraction, len(order)) :]] = "excluded"
    return split


def held_out_conditions_split(
    labels: Sequence[str],
    held_out: Sequence[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    control_label: str = "control",
    delimiter: str = "+",
) -> np.ndarray:
    """Hold whole conditions out: their cells are "test", every other cell "train" or "val".

    Rule: a cell whose condition (members compared order-insensitively, "B+A" is "A+B") is in
    ``held_out`` is "test"; the other cells are shuffled with ``seed`` and the first
    ``round(val_fraction n)`` are "val", the rest "train". Use it to ask for combinations never
    seen in training whose members were (e.g. Norman's pairs with both singles measured).

    Parameters
    ----------
    labels
        Condition label per cell.
    held_out
        Condition labels to hold out; each must occur in ``labels``.
    val_fraction
        Fraction of the other cells used for validation, in [0, 1).
    seed
        Seed of the train / val shuffle.
    control_label, delimiter
        How labels are parsed (see :func:`parse_label`).

    Returns
    -------
    Split label per cell.

    Shapes
    ------
    labels : (N,)
    split : (N,)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must lie in [0, 1).")
    parse = partial(parse_label, delimiter=delimiter, control_label=control_label)
    codes, members = factorize_members(labels, parse)
    wanted = {parse(str(label)): str(label) for label in held_out}
    missing = sorted(label for key, label in wanted.items() if key not in set(members))
    if missing:
        raise ValueError(f"held_out conditions {missing} have no cells; check their spelling against the labels.")
    if () in wanted:
        raise ValueError("held_out contains the control label; control cells are needed in training.")
    test = np.isin(codes, [code for code, key in enumerate(members) if key in wanted])
    split = np.full(len(codes), "train", dtype=SPLIT_DTYPE)
    split[test] = "test"
    others = np.random.default_rng(seed).permutation(np.flatnonzero(~test))
    split[others[: round(val_fraction * len(others))]] = "val"
    return split


def bootstrap_cells(labels: Sequence[str], cells: np.ndarray, *, seed: int) -> np.ndarray:
    """A bootstrap resample of ``cells`` stratified by condition (for bagging an ensemble of fits).

    Rule: within each condition of ``cells``, as many cells as it has are drawn with replacement by
    ``numpy.random.default_rng(seed)``, conditions taken in sorted order; the result is sorted. Every
    condition keeps its cell count, so per-perturbation cell counts N_t are unchanged.

    Parameters
    ----------
    labels
        Condition label of every cell of the dataset.
    cells
        Row positions to resample (e.g. the training split).
    seed
        Seed of the draws.

    Returns
    -------
    Sorted row positions, with repeats.

    Shapes
    ------
    labels : (N,); cells : (n,) -> (n,)

    Examples
    --------
    >>> rows = bootstrap_cells(np.array(["a", "a", "b", "b", "b"]), np.arange(5), seed=0)
    >>> len(rows), int((rows < 2).sum())
    (5, 2)
    """
    cells = np.asarray(cells, dtype=np.int64)
    conditions = np.asarray(labels)[cells].astype(str)
    rng = np.random.default_rng(seed)
    drawn = []
    for condition in np.unique(conditions):
        members = cells[conditions == condition]
        drawn.append(rng.choice(members, size=len(members), replace=True))
    return np.sort(np.concatenate(drawn)) if drawn else cells

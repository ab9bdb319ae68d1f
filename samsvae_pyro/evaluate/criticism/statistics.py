"""Discrepancy statistics T(x) of a posterior predictive check, from sums streamed over cells (issue 16).

Every statistic is computed the same way on the observed counts and on each replicated data set, so
only sums over cells are kept (:class:`CountMoments`), never a replicated count matrix. Definitions
(x the counts of the checked cells, f(x) = log2(1 + 1e4 x / l) the "perturbseq" transform of the ATE,
variances with denominator n, the same for observed and replicated data):

- per gene: ``mean``, ``variance``, ``cv`` (sd / mean, 0 for a gene without counts), ``zero_fraction``;
- per cell: ``library_size`` (sum of counts), ``detected_genes`` (genes with x > 0), ``cv`` across genes;
- per condition c and gene, against the control cells: ``shift`` (mean f(x) in c minus in control: the
  data ATE of the checked cells), ``variance_change`` (variance of f(x) in c minus in control),
  ``zero_fraction_change``; for a combination whose members are all checked conditions,
  ``interaction`` = shift(combination) - sum of the members' shifts;
- per data set: ``mean_variance_slope`` (least-squares slope of log(1 + variance) on log(1 + mean)
  across genes, the mean-variance relationship in one number) and ``zero_fraction`` (all entries).

The count predictive interval coverage uses the randomised probability integral transform of each
observed count among its replicates (:func:`count_pit`): uniform on (0, 1) whenever the observed
count is exchangeable with its replicates, however coarse the counts and however few the replicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from samsvae_pyro.data.transforms import perturbseq_transform

LEVELS = ("gene", "cell", "condition", "interaction", "dataset")


@dataclass(frozen=True)
class Statistic:
    """A discrepancy statistic: its level, name, and whether it is compared on a log(1 + .) scale."""

    level: str
    name: str
    log_scale: bool = False


STATISTICS = (
    Statistic("gene", "mean", log_scale=True),
    Statistic("gene", "variance", log_scale=True),
    Statistic("gene", "cv"),
    Statistic("gene", "zero_fraction"),
    Statistic("cell", "library_size", log_scale=True),
    Statistic("cell", "detected_genes"),
    Statistic("cell", "cv"),
    Statistic("condition", "shift"),
    Statistic("condition", "variance_change"),
    Statistic("condition", "zero_fraction_change"),
    Statistic("interaction", "interaction"),
    Statistic("dataset", "mean_variance_slope"),
    Statistic("dataset", "zero_fraction"),
)


def statistic(level: str, name: str) -> Statistic:
    """The registered statistic ``name`` of ``level``."""
    for item in STATISTICS:
        if (item.level, item.name) == (level, name):
            return item
    raise ValueError(f"No statistic {name!r} at level {level!r}; choose one of "
                     f"{[(s.level, s.name) for s in STATISTICS]}.")


class CountMoments:
    """Sums over cells of x, x^2 (per gene) and of f(x), f(x)^2, [x = 0] (per condition and gene).

    Parameters
    ----------
    n_conditions, n_genes
        C and G.
    batch_shape
        ``()`` for the observed data, ``(R,)`` for R replicated data sets.
    device
        Where the sums live (float64).

    Shapes
    ------
    sum_x, sum_x2 : (*batch_shape, G); sum_f, sum_f2, n_zero : (*batch_shape, C, G); n_cells : (C,).
    """

    def __init__(self, n_conditions: int, n_genes: int, *, batch_shape: Sequence[int] = (),
                 device: torch.device | str | None = None):
        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*batch_shape, *shape, dtype=torch.float64, device=device)

        self.n_cells = torch.zeros(n_conditions, dtype=torch.float64, device=device)
        self.sum_x, self.sum_x2 = zeros(n_genes), zeros(n_genes)
        self.sum_f, self.sum_f2, self.n_zero = zeros(n_conditions, n_genes), zeros(n_conditions, n_genes), \
            zeros(n_conditions, n_genes)

    def add(self, x: Tensor, condition: Tensor) -> None:
        """Add a batch of cells. Shapes: x (*batch_shape, B, G) counts; condition (B,) int64 in [0, C).

        Sums over the batch are taken in x's precision (float32: variances of f(x) within about 1e-5) and
        accumulated in float64; a batch touches only the rows of its own conditions (cells sorted by condition
        make batches of few conditions).
        """
        present, local = torch.unique(condition, return_inverse=True)

        def by_condition(values: Tensor) -> Tensor:  # (*batch_shape, B, G) -> (*batch_shape, c, G)
            out = values.new_zeros(*values.shape[:-2], len(present), values.shape[-1])
            return out.index_add_(-2, local, values).double()

        f = perturbseq_transform(x)
        self.n_cells.index_add_(0, condition, torch.ones_like(condition, dtype=torch.float64))
        self.sum_x += x.sum(-2).double()
        self.sum_x2 += (x * x).sum(-2).double()
        self.sum_f[..., present, :] += by_condition(f)
        self.sum_f2[..., present, :] += by_condition(f * f)
        self.n_zero[..., present, :] += by_condition((x == 0).to(x.dtype))


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, 0 where the denominator is 0."""
    return torch.where(denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0), 0.0)


def gene_statistics(moments: CountMoments) -> dict[str, Tensor]:
    """Per-gene mean, variance, cv and zero fraction over all cells. Shapes: each (*batch_shape, G)."""
    n = moments.n_cells.sum()
    mean = moments.sum_x / n
    variance = (moments.sum_x2 / n - mean * mean).clamp_min(0.0)
    return {"mean": mean, "variance": variance, "cv": _ratio(variance.sqrt(), mean),
            "zero_fraction": moments.n_zero.sum(-2) / n}


def dataset_statistics(moments: CountMoments) -> dict[str, Tensor]:
    """Mean-variance slope across genes and the overall zero fraction. Shapes: each (*batch_shape,)."""
    genes = gene_statistics(moments)
    log_mean, log_variance = genes["mean"].log1p(), genes["variance"].log1p()
    centred = log_mean - log_mean.mean(-1, keepdim=True)
    slope = _ratio((centred * log_variance).sum(-1), (centred * centred).sum(-1))
    return {"mean_variance_slope": slope, "zero_fraction": genes["zero_fraction"].mean(-1)}


def condition_statistics(moments: CountMoments, control: int) -> dict[str, Tensor]:
    """Shift, variance change and zero-fraction change of every condition against condition ``control``.

    Shapes: each (*batch_shape, C, G); the control's own row is zero.
    """
    n = moments.n_cells.unsqueeze(-1)  # (C, 1)
    mean = moments.sum_f / n
    variance = (moments.sum_f2 / n - mean * mean).clamp_min(0.0)
    zero_fraction = moments.n_zero / n
    return {name: value - value[..., control:control + 1, :] for name, value in
            (("shift", mean), ("variance_change", variance), ("zero_fraction_change", zero_fraction))}


def interactions(shift: Tensor, combinations: Sequence[tuple[int, Sequence[int]]]) -> Tensor:
    """shift(combination) - sum of its members' shifts, for (combination row, member rows) pairs.

    Shapes: shift (..., C, G); returns (..., len(combinations), G).
    """
    rows = [shift[..., row, :] - sum(shift[..., member, :] for member in members)
            for row, members in combinations]
    return torch.stack(rows, -2) if rows else shift[..., :0, :]


def cell_statistics(x: Tensor) -> dict[str, Tensor]:
    """Library size, detected genes and cv across genes of each cell. Shapes: x (..., B, G); each (..., B)."""
    return {"library_size": x.sum(-1), "detected_genes": (x > 0).sum(-1).to(x.dtype),
            "cv": _ratio(x.std(-1, correction=0), x.mean(-1))}


def count_pit(observed: Tensor, replicated: Tensor, noise: Tensor) -> Tensor:
    """Randomised PIT u = (#{rep < obs} + v (#{rep = obs} + 1)) / (R + 1) of each observed count.

    Uniform on (0, 1) when the observed value and its R replicates are exchangeable (the rank of the
    observed value among all R + 1, ties broken at random, is uniform). ``noise`` is v ~ U(0, 1).

    Shapes: observed (B, G); replicated (R, B, G); noise (B, G); returns (B, G).
    """
    below = (replicated < observed).sum(0)
    ties = (replicated == observed).sum(0)
    return (below + noise * (ties + 1)) / (replicated.shape[0] + 1)


def covered(pit: Tensor, level: float) -> Tensor:
    """Whether each value lies in the central ``level`` predictive interval, read from its PIT."""
    return (pit - 0.5).abs() <= level / 2

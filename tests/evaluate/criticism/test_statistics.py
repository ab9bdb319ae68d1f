"""Each discrepancy statistic on hand-made counts whose values are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samsvae_pyro.evaluate import perturbseq_transform
from samsvae_pyro.evaluate.criticism.statistics import (
    CountMoments, cell_statistics, condition_statistics, count_pit, covered, dataset_statistics, gene_statistics,
    interactions, statistic,
)

# 3 cells x 2 genes; cell 0 is the control (condition 0), cells 1-2 condition 1
X = torch.tensor([[0.0, 2.0], [4.0, 0.0], [2.0, 2.0]])
CONDITION = torch.tensor([0, 1, 1])


def moments(x=X, condition=CONDITION, n_conditions=2, batch_shape=()):
    out = CountMoments(n_conditions, x.shape[-1], batch_shape=batch_shape)
    out.add(x, condition)
    return out


def test_gene_statistics():
    genes = gene_statistics(moments())
    assert genes["mean"].tolist() == pytest.approx([2.0, 4 / 3])
    assert genes["variance"].tolist() == pytest.approx([8 / 3, 8 / 9])  # denominator n
    assert genes["cv"].tolist() == pytest.approx([np.sqrt(8 / 3) / 2, np.sqrt(8 / 9) / (4 / 3)])
    assert genes["zero_fraction"].tolist() == pytest.approx([1 / 3, 1 / 3])


def test_gene_without_counts_has_zero_cv():
    genes = gene_statistics(moments(torch.zeros(3, 2)))
    assert genes["cv"].tolist() == [0.0, 0.0] and genes["zero_fraction"].tolist() == [1.0, 1.0]


def test_condition_statistics_against_the_control():
    f = perturbseq_transform(X.numpy().astype(float))
    stats = condition_statistics(moments(), control=0)
    assert stats["shift"][1].tolist() == pytest.approx(f[1:].mean(0) - f[0])
    # one control cell: variance 0; squares of f ~ 12 are summed in float32 (x's precision), about 1e-5 off
    assert stats["variance_change"][1].tolist() == pytest.approx(f[1:].var(0), abs=1e-4)
    assert stats["zero_fraction_change"][1].tolist() == pytest.approx([0.0 - 1.0, 0.5 - 0.0])
    assert all(float(v[0].abs().sum()) == 0 for v in stats.values())  # the control's own row


def test_batches_and_replicates_add_up_to_the_whole():
    whole = moments()
    parts = CountMoments(2, 2)
    parts.add(X[:1], CONDITION[:1])
    parts.add(X[1:], CONDITION[1:])
    for name in ("sum_x", "sum_x2", "sum_f", "sum_f2", "n_zero", "n_cells"):
        assert torch.allclose(getattr(whole, name), getattr(parts, name))
    stacked = moments(torch.stack([X, 2 * X]), batch_shape=(2,))  # replicate 1 doubles every count
    means = gene_statistics(stacked)["mean"]
    assert means[0].tolist() == pytest.approx([2.0, 4 / 3]) and means[1].tolist() == pytest.approx([4.0, 8 / 3])


def test_interaction_is_the_pair_minus_its_singles():
    shift = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [5.0, 1.5]])  # control, A, B, A+B
    assert interactions(shift, [(3, [1, 2])]).tolist() == [[1.0, 0.5]]
    assert interactions(shift, []).shape == (0, 2)


def test_mean_variance_slope_is_one_when_variance_equals_mean():
    x = torch.tensor([[0.0, 2.0, 6.0], [2.0, 6.0, 12.0]])  # per gene mean = variance = 1, 4, 9
    stats = dataset_statistics(moments(x, torch.tensor([0, 0]), n_conditions=1))
    assert float(stats["mean_variance_slope"]) == pytest.approx(1.0)
    assert float(stats["zero_fraction"]) == pytest.approx(1 / 6)


def test_cell_statistics():
    cells = cell_statistics(X)
    assert cells["library_size"].tolist() == [2.0, 4.0, 4.0]
    assert cells["detected_genes"].tolist() == [1.0, 1.0, 2.0]
    assert cells["cv"].tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_pit_known_values():
    observed = torch.tensor([[0.0, 5.0, 3.0]])
    replicated = torch.tensor([[[1.0, 5.0, 3.0]], [[2.0, 5.0, 1.0]], [[3.0, 5.0, 4.0]]])  # R = 3
    noise = torch.tensor([[0.5, 0.5, 0.5]])
    # below all: u = v / 4; tied with all three: u = v * 4 / 4; one below, one tie: (1 + v * 2) / 4
    assert count_pit(observed, replicated, noise).tolist() == [[0.125, 0.5, 0.5]]
    assert covered(torch.tensor([0.24, 0.26, 0.5, 0.95, 0.96]), 0.9).tolist() == [True, True, True, True, False]


def test_pit_is_uniform_for_exchangeable_discrete_counts():
    generator = torch.Generator().manual_seed(0)
    draws = torch.poisson(torch.full((21, 200, 50), 0.7), generator=generator)  # many ties
    pit = count_pit(draws[0], draws[1:], torch.rand(200, 50, generator=generator))
    assert float(covered(pit, 0.5).double().mean()) == pytest.approx(0.5, abs=0.02)
    assert float(covered(pit, 0.9).double().mean()) == pytest.approx(0.9, abs=0.015)


def test_unknown_statistic_is_named():
    with pytest.raises(ValueError, match="No statistic 'median'"):
        statistic("gene", "median")

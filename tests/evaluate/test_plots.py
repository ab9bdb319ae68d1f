"""Every plot writes a non-empty PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samsvae_pyro.evaluate import (
    ate_anndata,
    per_condition_metrics,
    plot_ate_scatter,
    plot_mask_heatmap,
    plot_metric_distribution,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 2000


@pytest.fixture
def pred_and_truth(rng, random_ate):
    truth = random_ate(rng, n_conditions=8, n_genes=40)
    values = truth.X + 0.3 * rng.normal(size=truth.shape)
    values[0] = np.nan  # a skipped condition must not break the plot
    return ate_anndata(values, truth.obs_names, truth.var_names), truth


def test_ate_scatter_and_metric_distribution(tmp_path, pred_and_truth):
    pred, truth = pred_and_truth
    assert_png(plot_ate_scatter(pred, truth, tmp_path / "scatter.png", top_k=5))
    per_condition = per_condition_metrics(pred, truth, top_k=5)
    assert_png(plot_metric_distribution(per_condition, tmp_path / "nested" / "dist.png"))
    with pytest.raises(ValueError, match="numeric"):
        plot_metric_distribution(pd.DataFrame({"name": ["a"]}), tmp_path / "bad.png")


def test_mask_heatmap(tmp_path, rng):
    mask_prob = pd.DataFrame(rng.random((12, 8)), index=[f"P{t}" for t in range(12)])
    assert_png(plot_mask_heatmap(mask_prob, tmp_path / "mask.png"))
    assert_png(plot_mask_heatmap(mask_prob.iloc[:1], tmp_path / "one_row.png"))
    with pytest.raises(ValueError, match="finite"):
        plot_mask_heatmap(mask_prob.iloc[:0], tmp_path / "empty.png")


def test_training_curves(tmp_path):
    history = pd.DataFrame({"step": np.arange(50), "train_loss": np.linspace(10, 1, 50), "val_loss": np.nan})
    history.loc[::10, "val_loss"] = np.linspace(11, 2, 5)
    assert_png(plot_training_curves(history, tmp_path / "curves.png"))
    with pytest.raises(ValueError, match="val_loss"):
        plot_training_curves(history.drop(columns="val_loss"), tmp_path / "bad.png")


def test_mask_heatmap_order_puts_each_latent_block_together():
    from samsvae_pyro.evaluate.plots import _block_order

    blocks = np.kron(np.eye(3), np.ones((4, 1)))  # 12 perturbations, 4 on each of 3 latents
    rng = np.random.default_rng(0)
    rows, columns = rng.permutation(12), rng.permutation(3)
    shuffled = blocks[np.ix_(rows, columns)]
    order_rows, order_columns = _block_order(shuffled)
    ordered = shuffled[np.ix_(order_rows, order_columns)]
    np.testing.assert_array_equal(ordered, blocks)  # a staircase of contiguous blocks again

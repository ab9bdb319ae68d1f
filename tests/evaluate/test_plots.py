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


# ---- issue 17, item 16: plots a biologist can read
def test_ate_scatter_has_units_slope_and_highlights_held_out_conditions(pred_and_truth):
    from samsvae_pyro.evaluate.plots import ATE_UNIT, _ate_scatter_figure

    pred, truth = pred_and_truth
    truth.obs["in_train"] = [True] * 6 + [False] * 2
    pred = ate_anndata(2 * truth.X, truth.obs_names, truth.var_names)  # effects twice too large: slope 2
    left, right = _ate_scatter_figure(pred, truth, top_k=5, highlight=None, unit=ATE_UNIT).axes[:2]
    assert ATE_UNIT in left.get_xlabel() and ATE_UNIT in left.get_ylabel()
    assert "slope = 2.00" in left.get_title() and "r = 1.000" in left.get_title()
    legend = [text.get_text() for text in left.get_legend().get_texts()]
    assert "held out of training (2)" in legend and "conditions with training cells (6)" in legend


def test_per_condition_plot_names_the_worst_conditions(pred_and_truth):
    from samsvae_pyro.evaluate.plots import _metric_distribution_figure

    pred, truth = pred_and_truth
    table = pd.DataFrame({"pearson": [0.9, 0.1, 0.8, 0.7], "rank": [0.0, 0.6, 0.1, 0.0]},
                         index=["KLF1", "CEBPA", "GATA1", "SPI1"])
    panels = _metric_distribution_figure(table, n_named=1).axes
    texts = [" ".join(t.get_text() for t in axes.texts) for axes in panels]
    assert "CEBPA: 0.1" in texts[0] and "CEBPA: 0.6" in texts[1] and "KLF1" not in texts[0]


def test_mask_heatmap_is_sized_to_the_matrix_and_ordered_as_a_staircase(tmp_path, rng):
    from matplotlib.image import imread

    from samsvae_pyro.evaluate.plots import _mask_heatmap_figure, mask_order

    blocks = np.zeros((12, 8))
    for t in range(12):
        blocks[t, t % 4] = 0.95  # 4 dimensions used, 3 perturbations each
    shuffled = blocks[rng.permutation(12)][:, rng.permutation(8)]
    rows, columns = mask_order(shuffled)
    ordered = shuffled[np.ix_(rows, columns)]
    assert (ordered.argmax(axis=1) == np.repeat(np.arange(4), 3)).all()  # a staircase over the used dims
    frame = pd.DataFrame(shuffled, index=[f"PERTURBATION_{t}" for t in range(12)],
                         columns=[f"latent_{k}" for k in range(8)])
    height, width = imread(plot_mask_heatmap(frame, tmp_path / "mask.png")).shape[:2]
    assert height / 12 >= 20 and width / 8 >= 30  # pixels per row and per column
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _mask_heatmap_figure(frame)
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    axes = figure.axes[0]
    for labels in (axes.get_xticklabels(), axes.get_yticklabels()):
        boxes = [label.get_window_extent(renderer) for label in labels]
        assert len(boxes) in (8, 12) and not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))


def test_mask_heatmap_order_puts_each_latent_block_together():
    from samsvae_pyro.evaluate.plots import mask_order

    blocks = np.kron(np.eye(3), np.ones((4, 1)))  # 12 perturbations, 4 on each of 3 latents
    rng = np.random.default_rng(0)
    rows, columns = rng.permutation(12), rng.permutation(3)
    shuffled = blocks[np.ix_(rows, columns)]
    order_rows, order_columns = mask_order(shuffled)
    ordered = shuffled[np.ix_(order_rows, order_columns)]
    np.testing.assert_array_equal(ordered, blocks)  # a staircase of contiguous blocks again

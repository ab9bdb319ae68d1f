"""The check on a small model: observed values, calibration on data drawn from the model, side by side, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from samsvae_pyro.data import MinibatchLoader, build_perturbation_data, simulate_counts
from samsvae_pyro.evaluate import perturbseq_transform
from samsvae_pyro.evaluate.criticism import compare_checks, posterior_predictive_check
from samsvae_pyro.evaluate.predictive import sample_globals, sample_x
from samsvae_pyro.guides import make_guide
from samsvae_pyro.models import SAMSVAEModel


def build(likelihood: str = "nb", n_double: int = 2):
    adata = simulate_counts(n_perturbations=4, cells_per_perturbation=40, n_genes=30, n_double=n_double, seed=0)
    data = build_perturbation_data(adata, perturbation_key="perturbation", control_label="non-targeting",
                                   split_key="split", count_data=likelihood != "normal")
    torch.manual_seed(0)
    model = SAMSVAEModel(data.n_genes, data.n_perturbations, 4, likelihood=likelihood, n_hidden=16,
                         mask_prior_prob=0.3)
    guide = make_guide("correlated", model, x_mean=torch.as_tensor(data.x_mean), x_std=torch.as_tensor(data.x_std),
                       input_transform=data.x_transform, n_hidden=16, embedding_hidden=16)
    return model, guide, data


@pytest.fixture(scope="module")
def fitted():
    return build()


def test_observed_values_are_the_data_statistics(fitted):
    model, guide, data = fitted
    cells = data.indices("test")
    torch.manual_seed(0)
    check = posterior_predictive_check(model, guide, data, cells, n_samples=3, batch_size=16)
    counts = data.counts[cells].toarray().astype(float)
    means = check.select("gene", "mean", mode="in_sample").set_index("unit")["observed"]
    assert np.allclose(means.loc[data.var_names].to_numpy(), counts.mean(0))
    labels, f = data.labels[cells], perturbseq_transform(counts)
    condition = sorted(set(labels) - {"non-targeting"})[0]
    shift = check.select("condition", "shift", mode="generative")
    shift = shift[shift["condition"] == condition].set_index("unit")["observed"]
    expected = f[labels == condition].mean(0) - f[labels == "non-targeting"].mean(0)
    assert np.allclose(shift.loc[data.var_names].to_numpy(), expected, atol=1e-5)  # f in float32
    assert set(check.table["level"]) == {"gene", "cell", "condition", "interaction", "dataset"}
    assert check.table["p_value"].between(0, 1).all()
    assert len(check.select("cell", "library_size", mode="in_sample")) == len(cells)


def test_data_drawn_from_the_model_pass_the_generative_check(fitted):
    """Data and replicates are exchangeable here, so p-values and interval coverage are calibrated."""
    model, guide, data = fitted
    cells = np.arange(data.n_cells)
    torch.manual_seed(1)
    dosages = torch.as_tensor(data.dosages.toarray())
    library = torch.as_tensor(data.library_size)
    x = sample_x(model, sample_globals(guide, _batch(data), 1), dosages, library)[0]
    own = dataclasses.replace(data, counts=sp.csr_matrix(x.numpy()))  # the model input keeps l
    check = posterior_predictive_check(model, guide, own, cells, n_samples=30, modes=("generative",))
    summary = check.summary()
    coverage = summary.loc[("generative", "count", "interval")]
    assert coverage["coverage_50"] == pytest.approx(0.5, abs=0.05)
    assert coverage["coverage_90"] == pytest.approx(0.9, abs=0.04)
    # p < 0.01 should flag about 1% of units; one shared global draw makes the genes' p-values move together
    # (0.00-0.10 per statistic over data seeds 1-5), so the test bounds the average over four statistics
    keys = [("generative", "gene", "mean"), ("generative", "gene", "variance"), ("generative", "gene", "zero_fraction"),
            ("generative", "condition", "shift")]
    assert summary.loc[keys, "flagged"].mean() <= 0.06, summary.loc[keys, "flagged"]


def _batch(data):
    return next(iter(MinibatchLoader(data, np.arange(1), batch_size=1)))


def test_side_by_side_table(fitted):
    model, guide, data = fitted
    cells = data.indices("test")
    checks = {name: posterior_predictive_check(model, guide, data, cells, n_samples=2, modes=("in_sample",))
              for name in ("first", "second")}
    table = compare_checks(checks)
    assert list(table.columns.get_level_values(0).unique()) == ["first", "second"]
    assert ("in_sample", "gene", "cv") in table.index and ("in_sample", "count", "interval") in table.index
    assert table[("first", "n")].loc[("in_sample", "gene", "mean")] == data.n_genes
    with pytest.raises(ValueError, match="at least one check"):
        compare_checks({})


def test_without_controls_or_pairs_the_statistics_say_why(fitted):
    model, guide, data = fitted
    cells = np.flatnonzero(~data.control_mask & (data.split == "test"))
    check = posterior_predictive_check(model, guide, data, cells, n_samples=2)
    assert "no control cells" in check.skipped["condition"]
    assert not (check.table["level"] == "condition").any()
    singles = np.flatnonzero(np.char.find(data.labels.astype(str), "+") < 0)
    check = posterior_predictive_check(model, guide, data, singles, n_samples=2)
    assert "interaction" in check.skipped and (check.table["level"] == "condition").any()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_samples": 1}, "at least 2 replicates"),
    ({"modes": ("posterior",)}, "modes=.*in_sample"),
])
def test_bad_arguments(fitted, kwargs, message):
    model, guide, data = fitted
    with pytest.raises(ValueError, match=message):
        posterior_predictive_check(model, guide, data, data.indices("test"), **kwargs)


def test_continuous_models_are_refused():
    model, guide, data = build("normal", n_double=0)
    with pytest.raises(ValueError, match="'normal' likelihood"):
        posterior_predictive_check(model, guide, data, data.indices("test"))


def test_summary_to_dict(fitted):
    model, guide, data = fitted
    check = posterior_predictive_check(model, guide, data, data.indices("test"), n_samples=2, modes=("in_sample",))
    out = check.to_dict()
    assert out["n_samples"] == 2 and set(out["in_sample"]) == {"gene", "cell", "condition", "interaction",
                                                                  "dataset", "count"}
    assert isinstance(pd.Series(out["in_sample"]["gene"]["mean"]).loc["flagged"], float)

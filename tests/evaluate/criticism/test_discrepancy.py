"""Predictive p-values, comparisons and summaries on inputs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from samsvae_pyro.evaluate.criticism.discrepancy import compare, predictive_pvalue, summarise


def test_pvalue_known_values():
    replicated = np.array([[-1.0, 0.3, 1.1, 2.0, 0.5, 7.0], [1.0, -0.3, -1.1, 2.0, 0.5, 9.0]]).T  # R = 6
    # column 0: distinct values -1, 0.3, 1.1, 2, 0.5, 7 -> t reference; column 1: the same, negated but for 2 and 9
    mean, sd = replicated.mean(0), replicated.std(0, ddof=1)
    k = 1.5
    observed = mean + k * sd * np.sqrt(1 + 1 / 6)
    assert predictive_pvalue(observed, replicated) == pytest.approx(2 * stats.t.sf(k, df=5))


def test_discrete_statistics_get_the_rank_pvalue():
    replicated = np.array([[0.0, 2.0, 0.0], [0.0, 2.0, 1.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0]])  # R = 4, <= 2 values
    p = predictive_pvalue(np.array([1.0, 2.0, 0.0]), replicated)
    # one count never replicated: 2 (1 + 0) / 5; equal to every replicate: 1; zero among 3 zeros: 2 (1 + 3) / 5 -> 1
    assert p.tolist() == pytest.approx([0.4, 1.0, 1.0])


def test_pvalue_is_uniform_when_observed_and_replicates_are_alike():
    rng = np.random.default_rng(0)
    draws = rng.normal(3.0, 2.0, size=(21, 20_000))
    p = predictive_pvalue(draws[0], draws[1:])
    assert (p < 0.05).mean() == pytest.approx(0.05, abs=0.006)
    assert (p < 0.01).mean() == pytest.approx(0.01, abs=0.003)


def test_pvalue_needs_two_replicates():
    with pytest.raises(ValueError, match="at least 2 replicates"):
        predictive_pvalue(np.zeros(3), np.zeros((1, 3)))


def test_compare_columns_and_signs():
    replicated = np.tile(np.arange(1.0, 11.0)[:, None], (1, 2))  # 1..10 for both units
    frame = compare(np.array([5.5, 30.0]), replicated, interval=0.8)
    assert frame["replicated_mean"].tolist() == [5.5, 5.5]
    assert frame["replicated_lower"].tolist() == pytest.approx([1.9, 1.9])  # the 10% quantile
    assert frame["replicated_upper"].tolist() == pytest.approx([9.1, 9.1])
    assert frame["z"].tolist()[0] == 0.0 and frame["z"].tolist()[1] > 5  # the data exceed the model
    assert frame["p_value"].tolist()[0] == 1.0 and frame["p_value"].tolist()[1] < 1e-4
    with pytest.raises(ValueError, match="interval"):
        compare(np.zeros(2), replicated, interval=1.0)


def test_summary_measures():
    frame = pd.DataFrame({"observed": [1.0, 2.0, 3.0, 4.0], "replicated_mean": [2.0, 4.0, 6.0, 8.0],
                          "z": [-1.0, 0.0, 2.0, 3.0], "p_value": [0.5, 0.005, 0.2, 0.001]})
    summary = summarise(frame, threshold=0.01)
    assert summary == {"n": 4, "flagged": 0.5, "r2": pytest.approx(1.0), "median_z": 1.0}
    assert summarise(frame.assign(p_value=np.nan))["n"] == 0  # units without a p-value are not counted

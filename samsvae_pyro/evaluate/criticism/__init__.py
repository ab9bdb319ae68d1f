"""Posterior predictive checks ("criticism"): does a fitted model reproduce the observed cells, and where not?

:func:`posterior_predictive_check` replicates the checked cells from the one Pyro model and compares
per-gene, per-cell, per-condition and per-data-set statistics with the data; :func:`compare_checks`
lays several runs side by side; :mod:`.plots` draws them; :func:`to_inference_data` exports draws for ArviZ.
"""

from samsvae_pyro.evaluate.criticism.check import (
    MODES,
    PosteriorPredictiveCheck,
    compare_checks,
    posterior_predictive_check,
)
from samsvae_pyro.evaluate.criticism.inference_data import to_inference_data
from samsvae_pyro.evaluate.criticism.discrepancy import compare, predictive_pvalue, summarise
from samsvae_pyro.evaluate.criticism.statistics import STATISTICS, CountMoments, count_pit

__all__ = [
    "MODES",
    "STATISTICS",
    "CountMoments",
    "PosteriorPredictiveCheck",
    "compare",
    "compare_checks",
    "count_pit",
    "posterior_predictive_check",
    "predictive_pvalue",
    "summarise",
    "to_inference_data",
]

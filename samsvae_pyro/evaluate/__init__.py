"""Evaluation: treatment effects, metrics, mask recovery, baselines and report plots (spec sections 5 and 8).

Model-independent pieces live here; the model-dependent ones (IWELBO, model ATE, prediction) go
through Pyro traces in ``predictive.py`` and ``iwelbo.py``.
"""

from samsvae_pyro.evaluate.ate import ate_anndata, data_ate, perturbseq_transform

__all__ = [
    # treatment effects
    "ate_anndata",
    "data_ate",
    "perturbseq_transform",
]

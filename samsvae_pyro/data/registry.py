"""The registration of an AnnData (``setup_anndata``): where counts, labels and splits live.

One entry, ``adata.uns["_samsvae_setup"]``, holds the arguments of
:func:`~samsvae_pyro.data.build_perturbation_data`; the data themselves are never modified.

Examples
--------
>>> from samsvae_pyro.data import simulate_counts
>>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=10, n_genes=5, n_ate_samples=10)
>>> register(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> registered_setup(adata)["control_label"]
'non-targeting'
"""

from __future__ import annotations

from anndata import AnnData

from samsvae_pyro.data.design import build_perturbation_data

SETUP_KEY = "_samsvae_setup"


def register(adata: AnnData, *, count_data: bool = True, **setup) -> None:
    """Validate ``setup`` (arguments of ``build_perturbation_data``) on ``adata`` and record it in ``uns``.

    ``count_data=True`` checks the values as raw counts now, for the count likelihoods ("nb", "poisson");
    ``False`` registers continuous values (for ``likelihood="normal"``), checked only for finiteness.
    """
    build_perturbation_data(adata, **setup, count_data=count_data)
    adata.uns[SETUP_KEY] = {k: v for k, v in setup.items() if v is not None} | {"count_data": count_data}


def design_arguments(setup: dict) -> dict:
    """A recorded setup as arguments of ``build_perturbation_data`` (whose ``count_data`` the likelihood decides)."""
    return {k: v for k, v in setup.items() if k != "count_data"}


def registered_setup(adata: AnnData) -> dict:
    """The recorded setup of a registered AnnData; ValueError saying how to register one that is not."""
    if SETUP_KEY not in adata.uns:
        raise ValueError("This AnnData is not registered: call SAMSVAE.setup_anndata(adata, perturbation_key=..., "
                         "control_label=...) before creating the model.")
    return dict(adata.uns[SETUP_KEY])


def with_setup(adata: AnnData, setup: dict) -> AnnData:
    """``adata`` itself when registered, else a new AnnData registered with ``setup`` that shares the user's
    matrices (in memory or on disk; the user's object is untouched)."""
    if SETUP_KEY in adata.uns:
        return adata
    layers = {key: adata.layers[key] for key in adata.layers}
    return AnnData(X=adata.X, obs=adata.obs.copy(), var=adata.var.copy(), layers=layers,
                   uns={**adata.uns, SETUP_KEY: setup})

"""The registration of an AnnData (``setup_anndata``): where counts, labels and splits live.

One entry, ``adata.uns["_samsvae_setup"]``, holds the arguments of
:func:`~samsvae_pyro.data.build_perturbation_data`; the data themselves are never modified.

Registration validates by building the design. When the counts are on disk, that build (a streaming pass
over every count) is kept for the model created next from the same AnnData (:func:`registered_design`),
as long as the setup, the obs and var tables and the file are unchanged: a screen of two million cells is
then read once at setup instead of twice. Counts in memory are rebuilt (cheap, and the matrix may have
been edited in place).

Examples
--------
>>> from samsvae_pyro.data import simulate_counts
>>> adata = simulate_counts(n_perturbations=3, cells_per_perturbation=10, n_genes=5, n_ate_samples=10)
>>> register(adata, perturbation_key="perturbation", control_label="non-targeting")
>>> registered_setup(adata)["control_label"]
'non-targeting'
"""

from __future__ import annotations

import hashlib
import weakref

import pandas as pd
from anndata import AnnData

from samsvae_pyro.data.design import PerturbationData, build_perturbation_data
from samsvae_pyro.data.ondisk import OnDiskMatrix

SETUP_KEY = "_samsvae_setup"
_DESIGNS: dict[int, tuple[weakref.ref, tuple, PerturbationData]] = {}  # id(adata): (adata, inputs, design)


def register(adata: AnnData, *, count_data: bool = True, **setup) -> None:
    """Validate ``setup`` (arguments of ``build_perturbation_data``) on ``adata`` and record it in ``uns``.

    ``count_data=True`` checks the values as raw counts now, for the count likelihoods ("nb", "poisson");
    ``False`` registers continuous values (for ``likelihood="normal"``), checked only for finiteness.
    """
    data = build_perturbation_data(adata, **setup, count_data=count_data)
    adata.uns[SETUP_KEY] = {k: v for k, v in setup.items() if v is not None} | {"count_data": count_data}
    _DESIGNS.pop(id(adata), None)
    if isinstance(data.counts, OnDiskMatrix):  # AnnData is unhashable: kept by id, dropped with the AnnData
        _DESIGNS[id(adata)] = (weakref.ref(adata), _fingerprint(adata, registered_setup(adata), count_data,
                                                                data.counts), data)
        weakref.finalize(adata, _DESIGNS.pop, id(adata), None)


def registered_design(adata: AnnData, *, count_data: bool) -> PerturbationData:
    """The design of a registered AnnData: the one built at registration when its counts are on disk and
    nothing it was built from changed since, else a new build."""
    setup = registered_setup(adata)
    owner, fingerprint, data = _DESIGNS.get(id(adata), (None, None, None))
    if (owner is not None and owner() is adata and fingerprint == _fingerprint(adata, setup, count_data, data.counts)
            and data.obs_names.equals(adata.obs_names)):
        return data
    return build_perturbation_data(adata, **design_arguments(setup), count_data=count_data)


def _fingerprint(adata: AnnData, setup: dict, count_data: bool, counts: OnDiskMatrix) -> tuple:
    """What a design is built from: the setup, the obs table (cell names compared apart), var with its gene
    names, and the counts' file (size, modification time)."""
    tables = hashlib.sha256()
    for table, index in ((adata.obs, False), (adata.var, True)):
        tables.update(pd.util.hash_pandas_object(table, index=index).to_numpy().tobytes())
        tables.update(repr(list(table.columns)).encode())
    stat = counts.path.stat()
    return (repr(sorted(setup.items())), count_data, tables.hexdigest(), str(counts.path), counts.key,
            stat.st_size, stat.st_mtime_ns)


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

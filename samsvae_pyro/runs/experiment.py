"""The data of a run: an experiment config's AnnData rebuilt, a user's .h5ad read, and a saved run opened.

A run of an experiment config stores no data: :func:`prepare_data` rebuilds them from the resolved
config in ``experiment.yaml`` (a seeded simulation, or the input file and a seeded split), which
:func:`load_experiment_run` relies on. :func:`open_run` is what ``samsvae evaluate`` / ``interpret``
call: a saved run with the AnnData it was trained on, from ``--adata`` or from its experiment config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import anndata
import yaml
from anndata import AnnData

from samsvae_pyro.api import PerturbationModel
from samsvae_pyro.data import (
    load_norman,
    load_replogle,
    norman_data_efficiency_split,
    norman_ood_split,
    random_split,
    read_backed,
)
from samsvae_pyro.runs.config import SIMULATORS, model_class
from samsvae_pyro.runs.layout import EXPERIMENT, MODEL_FILES, check_saved_run, load_run

SPLIT_COLUMN = "experiment_split"  # obs column the config's split is written to
_NORMAN_SPLITS = {"norman_ood": norman_ood_split, "norman_data_efficiency": norman_data_efficiency_split}


def read_h5ad(path: str | os.PathLike, *, backed: bool = False) -> AnnData:
    """Read an .h5ad file, with a one-line error for a missing or unreadable file.

    ``backed=True``, or a ``.zarr`` directory: the counts stay on disk (:func:`~samsvae_pyro.data.read_backed`).
    """
    path = Path(path)
    if backed or path.is_dir():
        return read_backed(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected an .h5ad file).")
    try:
        return anndata.read_h5ad(path)
    except OSError as error:
        raise ValueError(f"cannot read {path} as an .h5ad file: {error}") from error


_LOADERS = {"norman": load_norman, "replogle": load_replogle, "h5ad": read_h5ad}


def prepare_data(config: Mapping[str, Any]) -> AnnData:
    """The AnnData of a resolved config: loaded or simulated, split, and registered with ``setup_anndata``.

    The split is written to ``obs["experiment_split"]``; simulation truth, when there is one, stays in
    ``uns["sams_truth"]``.
    """
    data = config["data"]
    if data["source"] in SIMULATORS:
        adata = SIMULATORS[data["source"]](**data["simulate"])
    else:
        adata = _LOADERS[data["source"]](data["path"])
    adata.obs[SPLIT_COLUMN] = _split(adata, data["split"], data["setup"])
    model_class(config["model"]["class"]).setup_anndata(adata, **data["setup"], split_key=SPLIT_COLUMN)
    return adata


def _split(adata: AnnData, split: Mapping[str, Any], setup: Mapping[str, Any]):
    """Split label per cell, (N,), as the config's ``data.split`` says."""
    kind = split["kind"]
    if kind == "column":
        if split["key"] not in adata.obs:
            raise ValueError(f"data.split.key={split['key']!r} is not an obs column; obs columns: "
                             f"{', '.join(map(str, adata.obs.columns[:20]))}.")
        return adata.obs[split["key"]].astype(str).to_numpy()
    if kind == "random":
        return random_split(adata.n_obs, fractions=split["fractions"], seed=split["seed"])
    key = setup.get("perturbation_key")
    if key is None or key not in adata.obs:
        raise ValueError(f"data.split.kind={kind} splits by condition labels: set data.setup.perturbation_key to "
                         f"an obs column of labels such as 'A' and 'A+B' (got {key!r}).")
    return _NORMAN_SPLITS[kind](adata.obs[key].astype(str).to_numpy(), fraction=split["fraction"],
                                split_seed=split["seed"], control_label=setup.get("control_label", "control"),
                                delimiter=setup.get("delimiter", "+"))


def build_model(config: Mapping[str, Any], adata: AnnData) -> PerturbationModel:
    """The untrained model of a resolved config on a prepared AnnData (``train.seed`` seeds the initialisation)."""
    options = {key: value for key, value in config["model"].items() if key != "class"}
    options.setdefault("seed", config["train"]["seed"])
    guide = dict(config["guide"])
    if guide:
        options["guide"] = guide.pop("name")
        options["guide_kwargs"] = guide
    cls = model_class(config["model"]["class"])
    try:
        return cls(adata, **options)
    except TypeError as error:  # an argument the class does not take
        raise ValueError(f"model/guide section does not fit {cls.__name__}: {error}; remove or rename that key "
                         "(see the class docstring for its arguments).") from error


def read_run_config(run_dir: str | Path) -> dict:
    """The resolved config stored in a run directory written by :func:`run_config`."""
    path = Path(run_dir) / EXPERIMENT
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an experiment run ({EXPERIMENT} missing): create one with "
                                "`samsvae train --config FILE` or `samsvae sweep FILE`, or for a run of "
                                "`samsvae train --adata` pass --adata.")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        config = error
    if not isinstance(config, dict):
        raise ValueError(f"{path} is damaged (not a YAML mapping); rerun the run with `samsvae train --config "
                         f"FILE --out {run_dir} --overwrite`.")
    return config


def load_experiment_run(run_dir: str | Path, *, device: str = "auto") -> tuple[PerturbationModel, AnnData]:
    """The trained model of a run directory and its AnnData, rebuilt from the stored config."""
    config = read_run_config(run_dir)
    missing = [name for name in MODEL_FILES if not (Path(run_dir) / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} holds no trained model ({', '.join(missing)} missing); train it with "
                                f"`samsvae train --config {Path(run_dir) / EXPERIMENT} --out {run_dir} --overwrite`.")
    adata = prepare_data(config)
    return load_run(run_dir, adata, device=device), adata


def open_run(run_dir: str | Path, adata_path: str | Path | None, *, device: str = "auto",
             backed: bool = False) -> tuple[PerturbationModel, AnnData]:
    """A saved run with its AnnData: read from ``adata_path`` (counts left on disk with ``backed``, see
    :func:`read_h5ad`), or rebuilt from the experiment config of a run of ``train --config`` / ``sweep`` when
    ``adata_path`` is None."""
    if adata_path is None:
        return load_experiment_run(run_dir, device=device)
    check_saved_run(run_dir)  # before reading a possibly large .h5ad
    adata = read_h5ad(adata_path, backed=backed)
    return load_run(run_dir, adata, device=device), adata

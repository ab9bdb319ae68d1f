"""One experiment run: data, model, training, then evaluation of the best checkpoint, in one run directory.

A run directory holds:

- ``experiment.yaml``: the resolved config (every default written out; rerun with ``samsvae train --config``);
- ``config.json``, ``checkpoint.pt``: the saved model (:meth:`PerturbationModel.save`; the parameters are
  those of the best validation loss, the trainer state resumes from the last step);
- ``history.csv``: step, training and validation loss per step;
- the evaluation report (:func:`samsvae_pyro.evaluate.report.evaluate_model`): ``metrics.json``,
  ``metrics.md``, ``iwelbo_per_cell.csv``, ATE files and plots.

The data are not copied into the run directory: :func:`prepare_data` rebuilds them from the config
(a seeded simulation, or the input file and a seeded split), which :func:`load_experiment_run` relies on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import anndata
import pandas as pd
from anndata import AnnData

from samsvae_pyro.api.base import CHECKPOINT, CONFIG, PerturbationModel
from samsvae_pyro.data import (
    load_norman,
    load_replogle,
    norman_data_efficiency_split,
    norman_ood_split,
    random_split,
)
from samsvae_pyro.experiments.config import SIMULATORS, dump_config

EXPERIMENT_FILE = "experiment.yaml"
HISTORY = "history.csv"
METRICS = "metrics.json"
SPLIT_COLUMN = "experiment_split"  # obs column the config's split is written to
_LOADERS = {"norman": load_norman, "replogle": load_replogle, "h5ad": anndata.read_h5ad}
_NORMAN_SPLITS = {"norman_ood": norman_ood_split, "norman_data_efficiency": norman_data_efficiency_split}


def model_class(name: str) -> type[PerturbationModel]:
    """The model class exported by :mod:`samsvae_pyro.api` under ``name`` (e.g. ``"SAMSVAE"``)."""
    import samsvae_pyro.api as api

    found = getattr(api, str(name), None)
    if not (isinstance(found, type) and issubclass(found, PerturbationModel) and found is not PerturbationModel):
        known = [n for n in getattr(api, "__all__", dir(api)) if n != "PerturbationModel"
                 and isinstance(getattr(api, n, None), type) and issubclass(getattr(api, n), PerturbationModel)]
        raise ValueError(f"model.class={name!r} is not a model class of samsvae_pyro.api; available: {', '.join(known)}.")
    return found


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


def run_config(config: Mapping[str, Any], run_dir: str | Path, *, overwrite: bool = False, progress: bool = True,
               evaluate: bool = True) -> dict:
    """Train the run of a resolved config, save it, and evaluate its best checkpoint, all in ``run_dir``.

    Parameters
    ----------
    config
        A resolved config (:func:`~samsvae_pyro.experiments.config.resolve_config`).
    run_dir
        Run directory (created); one that already holds a saved model needs ``overwrite``.
    overwrite, progress, evaluate
        Replace a saved model; show a progress bar; write the evaluation report after training.

    Returns
    -------
    The metrics (the content of ``metrics.json``), or ``{}`` when ``evaluate`` is False.
    """
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT).exists() and not overwrite:
        raise ValueError(f"{run_dir} already holds a saved model; choose another output directory or overwrite it.")
    adata = prepare_data(config)
    model = build_model(config, adata)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).unlink(missing_ok=True)  # a finished run is one with metrics
    dump_config(config, run_dir / EXPERIMENT_FILE)
    model.train(**config["train"], progress=progress)
    model.save(run_dir, overwrite=True)
    model.history.to_csv(run_dir / HISTORY, index=False)
    if not evaluate:
        return {}
    return model.evaluate(run_dir, truth=adata.uns.get("sams_truth"), **config["evaluate"])


def read_run_config(run_dir: str | Path) -> dict:
    """The resolved config stored in a run directory written by :func:`run_config`."""
    import yaml

    path = Path(run_dir) / EXPERIMENT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an experiment run ({EXPERIMENT_FILE} missing): create one with "
                                "`samsvae train --config FILE` or `samsvae sweep FILE`, or for a run of "
                                "`samsvae train --adata` pass --adata.")
    return yaml.safe_load(path.read_text())


def load_experiment_run(run_dir: str | Path, *, device: str = "auto") -> tuple[PerturbationModel, AnnData]:
    """The trained model of a run directory and its AnnData, rebuilt from the stored config."""
    config = read_run_config(run_dir)
    missing = [name for name in (CONFIG, CHECKPOINT) if not (Path(run_dir) / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} holds no trained model ({', '.join(missing)} missing); train it with "
                                f"`samsvae train --config {Path(run_dir) / EXPERIMENT_FILE} --out {run_dir} --overwrite`.")
    adata = prepare_data(config)
    model = model_class(config["model"]["class"]).load(run_dir, adata, device=device)
    if (Path(run_dir) / HISTORY).is_file():
        model.history = pd.read_csv(Path(run_dir) / HISTORY)
    return model, adata

"""A run directory: the name of every file in it, and the one ``save_run`` / ``load_run``.

file                      content                                                            written by
========================  =================================================================  ======================
``config.json``           how to rebuild the model (class, arguments, guide, setup, design,  :func:`save_run`
                          checksum of the checkpoint)
``checkpoint.pt``         parameters and trainer state (best-validation parameters)          :func:`save_run`
``history.csv``           step, training and validation loss                                 :func:`save_run`
``experiment.yaml``       the resolved experiment config (runs of a config only)              :mod:`.train`
``metrics.json`` / .md    the evaluation report; a finished run is one with metrics          :mod:`.evaluation`
``iwelbo_per_cell.csv``,  per-cell IWELBO, per-condition metrics, data and model ATE, plots   :mod:`.evaluation`
``per_condition_metrics.csv``, ``ate_data.h5ad``, ``ate_model.h5ad``, ``*.png``
``interpret.json``, CSV   the latent-structure analysis                                      :mod:`.interpretation`
``ppc.json``, ``ppc_*``   posterior predictive checks: summaries, every unit, figures         :mod:`.criticism`
``predictions.h5ad``      ``samsvae predict``'s default output                                the CLI
========================  =================================================================  ======================
=======
- ``config.json`` (how to rebuild the model: class, arguments, guide, setup, design, checksum of the
  checkpoint), ``checkpoint.pt`` (parameters of the best validation loss, trainer state), ``history.csv``
  (step, training and validation loss): :func:`save_run`;
- ``experiment.yaml``: the resolved experiment config, for runs of a config (:mod:`.train`);
- ``metrics.json``, ``metrics.md``, ``iwelbo_per_cell.csv``, ``per_condition_metrics.csv``,
  ``ate_data.h5ad``, ``ate_model.h5ad`` and PNG plots: the evaluation report (:mod:`.evaluation`); a
  finished run is one with ``metrics.json``;
- ``interpret.json`` and its CSV tables and plots: the latent-structure analysis (:mod:`.interpretation`);
- ``ppc.json``, ``ppc_summary.md`` / ``.csv``, ``ppc_table.csv.gz`` and ``ppc_*.png``: posterior predictive checks
  (:mod:`.criticism`);
- ``predictions.h5ad``: ``samsvae predict``'s default output.

A sweep directory (:mod:`.sweep`) holds ``sweep.yaml``, ``runs.csv``, ``summary.csv``, ``summary.md`` and
one run directory per run under ``runs/``.

Every file is written to a temporary name in the run directory and renamed into place
(:mod:`samsvae_pyro.files`); the model's two files are replaced together, so an interrupted save
leaves the previous model loadable. The model class is recorded once, in ``config.json``, and
resolved through :data:`samsvae_pyro.api.FAMILIES`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from anndata import AnnData

from samsvae_pyro.api import FAMILIES, PerturbationModel
from samsvae_pyro.api.persistence import CHECKPOINT, MODEL_CONFIG, SavedModelError, read_model_config
from samsvae_pyro.data.simulate import TRUTH_KEY  # noqa: F401  (re-exported: the truth key of a run's data)
from samsvae_pyro.files import atomic_path, write_text

HISTORY = "history.csv"
EXPERIMENT = "experiment.yaml"
METRICS, METRICS_MD = "metrics.json", "metrics.md"
IWELBO_CELLS = "iwelbo_per_cell.csv"
PER_CONDITION = "per_condition_metrics.csv"
ATE_DATA, ATE_MODEL = "ate_data.h5ad", "ate_model.h5ad"
INTERPRET = "interpret.json"
PREDICTIONS = "predictions.h5ad"
PPC, PPC_SUMMARY_MD, PPC_SUMMARY_CSV, PPC_TABLE = "ppc.json", "ppc_summary.md", "ppc_summary.csv", "ppc_table.csv.gz"
PPC_FIGURE = "ppc_{kind}_{mode}.png"
MODEL_FILES = (MODEL_CONFIG, CHECKPOINT)
# a sweep directory (:mod:`.sweep`): one run directory per run under RUNS_DIR, and the tables
RUNS_DIR, RUNS_TABLE, SWEEP_FILE = "runs", "runs.csv", "sweep.yaml"
SUMMARY_CSV, SUMMARY_MD = "summary.csv", "summary.md"


def save_run(model: PerturbationModel, run_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save the model (``config.json``, ``checkpoint.pt``) and its training history (``history.csv``).

    ``overwrite=False`` refuses a directory that already holds a saved model.
    """
    run_dir = Path(run_dir)
    model.save(run_dir, overwrite=overwrite)
    if model.history is not None:
        write_csv(model.history, run_dir / HISTORY, index=False)
    return run_dir


def load_run(run_dir: str | os.PathLike, adata: AnnData, *, guide: Callable | torch.nn.Module | None = None,
             device: str | None = "auto") -> PerturbationModel:
    """The model saved in ``run_dir`` (its family read from ``config.json``), on ``adata``, with its history.

    ``guide``: the same factory again, for a run saved with a custom guide. Missing or damaged files raise
    :class:`~samsvae_pyro.api.SavedModelError` (a ValueError) naming the file.
    """
    run_dir = check_saved_run(run_dir)
    name = read_model_config(run_dir)["class"]
    if name not in FAMILIES:
        raise SavedModelError(f"{run_dir / MODEL_CONFIG} names the model class {name!r}; known: {sorted(FAMILIES)}.")
    model = FAMILIES[name].load(run_dir, adata, guide=guide, device=device)
    if (run_dir / HISTORY).is_file():
        model.history = pd.read_csv(run_dir / HISTORY)
    return model


def check_saved_run(run_dir: str | os.PathLike) -> Path:
    """``run_dir``, if it holds a saved model; :class:`~samsvae_pyro.api.SavedModelError` naming what is missing."""
    run_dir = Path(run_dir)
    missing = [name for name in MODEL_FILES if not (run_dir / name).is_file()]
    if missing:
        raise SavedModelError(f"{run_dir} is not a saved run ({', '.join(missing)} missing); create one with "
                              "`samsvae train` or `samsvae demo`.")
    return run_dir


def read_metrics(run_dir: str | os.PathLike) -> dict:
    """``metrics.json`` of a run directory; a one-line error when it is not an evaluated run or is damaged."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {METRICS}: not an evaluated run directory (run `samsvae train` "
                                "or `samsvae evaluate` on it first).")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged (not valid JSON: {error}); run `samsvae evaluate` on the run "
                         "again.") from error


def write_json(value: Any, path: str | os.PathLike) -> Path:
    """Write ``value`` as indented JSON, atomically."""
    return write_text(path, json.dumps(value, indent=2))


def write_csv(frame: pd.DataFrame, path: str | os.PathLike, **options: Any) -> Path:
    """``frame.to_csv(path, **options)``, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **options)
    return Path(path)


def write_h5ad(adata: AnnData, path: str | os.PathLike) -> Path:
    """``adata.write_h5ad(path)``, atomically."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)

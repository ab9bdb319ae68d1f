"""Posterior predictive checks of saved runs: one table and one figure set for one or several runs (issue 16).

:func:`check_runs` checks every model on the same cells (:meth:`~samsvae_pyro.api.base.PerturbationModel.check`)
and writes to ``output_dir``:

- ``ppc.json``: settings, each run's summary and the statistics that did not apply;
- ``ppc_summary.md`` and ``ppc_summary.csv``: the summaries side by side (flagged fraction, r2, median z,
  count interval coverage per run);
- ``ppc_table.csv.gz``: every unit of every run (observed, replicated mean / sd / 90% interval, z, p-value);
- ``ppc_gene_statistics_<mode>.png``, ``ppc_condition_shifts_<mode>.png``, ``ppc_pvalues_<mode>.png``.

When ``output_dir`` holds an evaluation report, ``metrics.md`` gets a "Posterior predictive checks" section
with the flagged fractions and links to these files (and keeps it when the run is evaluated again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from samsvae_pyro._typing import CheckMode
from samsvae_pyro.api import PerturbationModel
from samsvae_pyro.evaluate.criticism import MODES, compare_checks
from samsvae_pyro.evaluate.criticism.plots import (
    plot_condition_shifts, plot_observed_vs_replicated, plot_pvalue_histograms,
)
from samsvae_pyro.files import atomic_path, write_text
from samsvae_pyro.runs.layout import (
    METRICS_MD, PPC, PPC_FIGURE, PPC_SUMMARY_CSV, PPC_SUMMARY_MD, PPC_TABLE, write_csv, write_json,
)
from samsvae_pyro.runs.render import check_markdown, jsonable, with_check_section

FIGURES = {"gene_statistics": plot_observed_vs_replicated, "condition_shifts": plot_condition_shifts,
           "pvalues": plot_pvalue_histograms}


def check_runs(models: Mapping[str, PerturbationModel], output_dir: str | os.PathLike, *, split: str | None = "test",
               n_samples: int = 20, modes: Sequence[CheckMode] = MODES, threshold: float = 0.01, plots: bool = True,
               seed: int = 0, log: Callable[[str], Any] | None = None) -> dict:
    """Check each model on the cells of ``split`` and write one report for all of them to ``output_dir``.

    Parameters
    ----------
    models
        Run name -> trained model; all must hold the same cells in ``split`` (e.g. runs trained on one AnnData).
    output_dir
        Where the files go (created if needed); with an evaluation report there, ``metrics.md`` links them.
    split, n_samples, modes, seed
        As for :meth:`~samsvae_pyro.api.base.PerturbationModel.check`.
    threshold
        p-value below which a unit counts as flagged.
    plots
        Whether to write the PNG figures.
    log
        Called with a line of progress per run.

    Returns
    -------
    The content of ``ppc.json``.
    """
    if not models:
        raise ValueError("check_runs needs at least one model, as {run name: model}.")
    n_cells = _same_cells(models, split)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checks = {}
    for name, model in models.items():
        checks[name] = model.check(split=split, n_samples=n_samples, modes=tuple(modes), seed=seed)
        if log is not None:
            log(f"checked {name}: {n_cells} cells x {n_samples} replicates")
    summary = compare_checks(checks, threshold=threshold)
    report = jsonable({"settings": {"split": split, "n_cells": n_cells, "n_samples": n_samples,
                                    "modes": list(dict.fromkeys(modes)), "threshold": threshold, "seed": seed},
                       "runs": {name: check.to_dict(threshold=threshold) for name, check in checks.items()},
                       "files": _write_tables(checks, summary, out)})
    report["files"]["figures"] = _write_figures(checks, out, report["settings"]["modes"]) if plots else []
    write_json(report, out / PPC)
    write_text(out / PPC_SUMMARY_MD, check_markdown(report))
    link_check_section(out)
    return report


def link_check_section(directory: str | os.PathLike) -> None:
    """Give ``metrics.md`` in ``directory`` the "Posterior predictive checks" section of its ``ppc.json`` (if both exist)."""
    directory = Path(directory)
    if (directory / METRICS_MD).is_file() and (directory / PPC).is_file():
        try:
            report = json.loads((directory / PPC).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{directory / PPC} is damaged (not valid JSON: {error}); run `samsvae check` on the "
                             "run again.") from error
        write_text(directory / METRICS_MD, with_check_section((directory / METRICS_MD).read_text(), report))


def _same_cells(models: Mapping[str, PerturbationModel], split: str | None) -> int:
    """The number of checked cells, after making sure every model checks the same ones."""
    cells = {name: _cell_names(model, split) for name, model in models.items()}
    first, reference = next(iter(cells.items()))
    for name, names in cells.items():
        if not np.array_equal(names, reference):
            raise ValueError(f"Runs {first!r} and {name!r} hold different {split or 'all'} cells, so their checks "
                             "would not be side by side; compare runs trained on the same AnnData and split "
                             "(for runs of other files, pass the same --adata).")
    return len(reference)


def _cell_names(model: PerturbationModel, split: str | None) -> np.ndarray:
    data = model.data
    rows = np.arange(data.n_cells) if split is None else data.indices(split)
    return np.sort(np.asarray(data.obs_names[rows], dtype=str))


def _write_tables(checks: Mapping[str, Any], summary: pd.DataFrame, out: Path) -> dict[str, str]:
    write_csv(summary, out / PPC_SUMMARY_CSV)
    table = pd.concat({name: check.table for name, check in checks.items()}, names=["run", None])
    with atomic_path(out / PPC_TABLE) as tmp:
        table.reset_index(level=0).to_csv(tmp, index=False, compression="gzip")
    return {"summary": PPC_SUMMARY_MD, "summary_csv": PPC_SUMMARY_CSV, "table": PPC_TABLE}


def _write_figures(checks: Mapping[str, Any], out: Path, modes: list[str]) -> list[str]:
    names = []
    for mode in modes:
        for kind, plot in FIGURES.items():
            if kind == "condition_shifts" and not any(len(c.select("condition", "shift", mode=mode))
                                                      for c in checks.values()):
                continue  # no control cells: no shifts to draw
            name = PPC_FIGURE.format(kind=kind, mode=mode)
            with atomic_path(out / name) as tmp:
                plot(checks, mode=mode).savefig(tmp, format="png", dpi=100)
            names.append(name)
    return names

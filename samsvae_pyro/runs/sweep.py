"""Sweeps: every combination of a config's listed values, run one after another or in parallel processes,
then aggregated into one table (issue 5, item 2).

The config's ``sweep`` section::

    sweep:
      grid:                         # dotted key -> values; one run per combination, in this order
        variant: [sams_vae_correlated, cpa_vae]
        data.split.fraction: [0.0, 0.5, 1.0]
        data.split.seed: [0, 1, 2, 3, 4]
      replicates: [data.split.seed] # keys aggregated over (mean +- sd); the others label a setting
      reference:                    # relative IWELBO: each run minus the run with these values changed
        variant: sams_vae_correlated
        data.split.fraction: 0.0

The reference of a run is the run whose settings equal its own with the ``reference`` values put in, so
the difference is taken on the same split seed (the same held-out cells), as the paper reports it.

Output directory: ``runs/<run name>/`` (one run directory each, see :mod:`.layout`), ``runs.csv`` (one row
per run), ``summary.csv`` and ``summary.md`` (mean and sd per setting), ``sweep.yaml`` (the config and
overrides used). A run whose directory already holds metrics for the same resolved config is reused,
so an interrupted sweep continues where it stopped.

Choices beyond the issue text: all runs are resolved and validated (keys, values, input files) before
any training starts; a run that fails while training (e.g. diverges) is recorded as failed and the
others go on; ``covering=True`` runs only as many runs as the longest value list, with every listed
value appearing at least once (a quick end-to-end check of a sweep config before the full grid).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from samsvae_pyro.device import DEFAULT_THREADS
from samsvae_pyro.files import write_text
from samsvae_pyro.runs.compare import (
    IWELBO,
    RELATIVE,
    comparison_markdown,
    order_columns,
    relative_iwelbo,
    run_label,
    run_scores,
)
from samsvae_pyro.runs.config import plain_config, resolve_config
from samsvae_pyro.runs.experiment import read_run_config
from samsvae_pyro.runs.layout import (
    EXPERIMENT,
    METRICS,
    RUNS_DIR,
    RUNS_TABLE,
    SUMMARY_CSV,
    SUMMARY_MD,
    SWEEP_FILE,
    read_metrics,
    write_csv,
)
from samsvae_pyro.runs.render import mean_sd
from samsvae_pyro.runs.train import run_config

SWEEP_KEYS = ("grid", "replicates", "reference")


@dataclass
class SweepRun:
    """One run of a sweep: its name, its values of the grid keys, and its resolved config."""

    name: str
    settings: dict[str, Any]
    config: dict


def sweep_section(config: Mapping[str, Any]) -> tuple[dict[str, list], list[str], dict[str, Any]]:
    """(grid, replicates, reference) of a raw config, validated against each other."""
    sweep = config.get("sweep")
    if not isinstance(sweep, Mapping) or not sweep.get("grid"):
        raise ValueError("the config has no sweep.grid; add sweep: {grid: {KEY: [values, ...]}} to sweep it, "
                         "or run it once with `samsvae train --config`.")
    unknown = [key for key in sweep if key not in SWEEP_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in section sweep; valid keys: {', '.join(SWEEP_KEYS)}.")
    grid = dict(sweep["grid"])
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep.grid.{key} should be a non-empty list of values, e.g. [0, 1, 2].")
    replicates = list(sweep.get("replicates") or [])
    reference = dict(sweep.get("reference") or {})
    for key in replicates + list(reference):
        if key not in grid:
            raise ValueError(f"sweep key {key!r} (in replicates or reference) is not a key of sweep.grid; "
                             f"grid keys: {', '.join(grid)}.")
    for key, value in reference.items():
        if value not in grid[key]:
            raise ValueError(f"sweep.reference.{key}={value!r} is not among the grid's values {grid[key]}.")
    return grid, replicates, reference


def expand_grid(grid: Mapping[str, Sequence], *, covering: bool = False) -> list[dict[str, Any]]:
    """Settings of every run: the product of the value lists, or with ``covering`` the shortest list of
    runs in which every value appears (run i takes value i mod len of each list)."""
    keys = list(grid)
    if covering:
        n = max(len(values) for values in grid.values())
        return [{key: grid[key][i % len(grid[key])] for key in keys} for i in range(n)]
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def run_name(settings: Mapping[str, Any]) -> str:
    """Directory name of a run: ``value`` for the variant, ``key-value`` for the others, joined by ``__``."""
    parts = [str(value) if key == "variant" else f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in settings.items()]
    name = "__".join(parts).replace("/", "_").replace(" ", "")
    return name or "run"


def plan_sweep(config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *,
               covering: bool = False) -> list[SweepRun]:
    """Every run of a raw config's sweep, resolved and validated (before anything trains).

    ``overrides`` apply to every run and win over the grid values.
    """
    grid, _, _ = sweep_section(config)
    fixed = [key for key in overrides or {} if key in grid]
    if fixed:
        raise ValueError(f"override {fixed[0]} is a key of sweep.grid, which sets it per run; change the grid's "
                         "values in the config instead.")
    runs = []
    for settings in expand_grid(grid, covering=covering):
        resolved = resolve_config(config, {**settings, **(overrides or {})})
        runs.append(SweepRun(run_name(settings), settings, resolved))
    if len({run.name for run in runs}) < len(runs):
        raise ValueError("two runs of the sweep get the same directory name; make the grid values distinct.")
    return runs


def run_sweep(config: Mapping[str, Any], out: str | Path, *, overrides: Mapping[str, Any] | None = None,
              jobs: int = 1, covering: bool = False, overwrite: bool = False, threads: int | None = DEFAULT_THREADS,
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a config's sweep into ``out`` and write its tables.

    Parameters
    ----------
    config
        A raw config with a ``sweep`` section (:func:`~samsvae_pyro.runs.config.load_config`).
    out
        Output directory (see the module docstring).
    overrides
        Dotted key -> value applied to every run (e.g. ``{"train.max_steps": 5}``).
    jobs
        Runs at a time: 1 runs them one after another in this process, more fans out over processes.
    covering, overwrite
        Run only a covering subset of the grid; replace run directories holding another config.
    threads
        torch CPU threads per run (``None``: torch's choice).
    progress
        Print a line per finished run (and a progress bar per run when ``jobs`` is 1).

    Returns
    -------
    The runs table (one row per run: settings, status, scores) and the summary (mean and sd per setting).
    """
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs={jobs!r} should be a positive integer.")
    runs = plan_sweep(config, overrides, covering=covering)
    out = Path(out)
    todo = [run for run in runs if not _reusable(run, out / RUNS_DIR / run.name, overwrite=overwrite)]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / SWEEP_FILE, yaml.safe_dump(plain_config(
        {"config": dict(config), "overrides": dict(overrides or {}), "covering": covering}), sort_keys=False))
    status = {run.name: "reused" for run in runs if run not in todo}
    status |= _execute(todo, out / RUNS_DIR, jobs=jobs, threads=threads, progress=progress)
    frame = runs_table(runs, out / RUNS_DIR, status, config)
    write_csv(frame, out / RUNS_TABLE)
    return frame, write_summary(frame, config, out)


def _reusable(run: SweepRun, run_dir: Path, *, overwrite: bool) -> bool:
    """Whether ``run_dir`` already holds this run's results; an error if it holds another config's."""
    if not (run_dir / EXPERIMENT).is_file():
        return False
    try:
        same = read_run_config(run_dir) == plain_config(run.config)
    except ValueError:  # a damaged experiment.yaml holds no run to reuse
        same = False
    if not same and not overwrite:
        raise ValueError(f"{run_dir} holds a run of a different config; choose another output directory or "
                         "overwrite it (--overwrite).")
    return same and (run_dir / METRICS).is_file()


def _execute(runs: list[SweepRun], runs_dir: Path, *, jobs: int, threads: int | None,
             progress: bool) -> dict[str, str]:
    """Status of each run ("ok" or "failed: reason"), running ``jobs`` at a time."""
    status = {}
    if jobs == 1:
        for i, run in enumerate(runs, 1):
            status[run.name] = _run_one(run.config, runs_dir / run.name, threads, progress)
            _report(progress, i, len(runs), run.name, status[run.name])
        return status
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_pool_context()) as pool:
        futures = {pool.submit(_run_one, run.config, runs_dir / run.name, threads, False): run.name for run in runs}
        for i, future in enumerate(as_completed(futures), 1):
            status[futures[future]] = future.result()
            _report(progress, i, len(runs), futures[future], status[futures[future]])
    return status


def _pool_context():
    """Workers forked from a server process that imported the package once (spawn where there is no fork).

    Never plain fork: the workers must not inherit a parent's CUDA or thread-pool state.
    """
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _run_one(config: dict, run_dir: Path, threads: int | None, progress: bool) -> str:
    """Train and evaluate one run (in this or a worker process); failures are returned, not raised."""
    try:
        run_config(config, run_dir, overwrite=True, progress=progress, threads=threads)
    except Exception as error:  # noqa: BLE001 - one failed run must not end the sweep; it is reported
        return f"failed: {type(error).__name__}: {' '.join(str(error).split())}"
    return "ok"


def _report(progress: bool, i: int, n: int, name: str, status: str) -> None:
    if progress:
        print(f"[{i}/{n}] {name}: {status}", flush=True)


def runs_table(runs: Sequence[SweepRun], runs_dir: Path, status: Mapping[str, str],
               config: Mapping[str, Any]) -> pd.DataFrame:
    """One row per run: its settings, status, model and scores, and the IWELBO relative to its reference."""
    _, _, reference = sweep_section(config)
    by_settings = {_key(run.settings): run for run in runs}
    rows = {}
    for run in runs:
        row: dict[str, Any] = {**run.settings, "status": status[run.name]}
        if status[run.name] in ("ok", "reused"):
            metrics = read_metrics(runs_dir / run.name)
            row |= {"model": run_label(runs_dir / run.name, metrics), **run_scores(metrics)}
            ref = by_settings.get(_key({**run.settings, **reference})) if reference else None
            if ref is not None and status[ref.name] in ("ok", "reused") and IWELBO in row:
                row[RELATIVE] = relative_iwelbo(runs_dir / run.name, runs_dir / ref.name)
        rows[run.name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")
    return order_columns(frame)


def _key(settings: Mapping[str, Any]) -> tuple:
    return tuple(sorted((key, repr(value)) for key, value in settings.items()))


def summarise(frame: pd.DataFrame, grid: Mapping[str, Sequence], replicates: Sequence[str]) -> pd.DataFrame:
    """Mean and sd (over the replicate keys) of every score, per setting of the other grid keys.

    Columns: the setting keys, ``n`` (finished runs), then ``<score> mean`` and ``<score> sd`` pairs.
    Failed runs are left out.
    """
    keys = [key for key in grid if key not in replicates]
    done = frame[frame["status"].isin(["ok", "reused"])]
    scores = [c for c in done.columns if c not in list(grid) + ["status", "model"]]
    groups = done.groupby(keys, sort=False, dropna=False) if keys else [((), done)]
    rows = []
    for setting, group in groups:
        values = dict(zip(keys, setting if isinstance(setting, tuple) else (setting,)))
        row: dict[str, Any] = {**values, "model": group["model"].iloc[0], "n": len(group)}
        for column in scores:
            numbers = pd.to_numeric(group[column], errors="coerce").dropna()
            row[f"{column} mean"] = numbers.mean() if len(numbers) else np.nan
            row[f"{column} sd"] = numbers.std(ddof=1) if len(numbers) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def write_summary(frame: pd.DataFrame, config: Mapping[str, Any], out: Path) -> pd.DataFrame:
    """Write ``summary.csv`` and ``summary.md`` (``mean ± sd`` cells) of a runs table; returns the summary."""
    grid, replicates, reference = sweep_section(config)
    summary = summarise(frame, grid, replicates)
    shown = summary[[c for c in summary.columns if not c.endswith((" mean", " sd"))]].copy()
    shown.columns = [_short(column) for column in shown.columns]
    for score in dict.fromkeys(c.rsplit(" ", 1)[0] for c in summary.columns if c.endswith((" mean", " sd"))):
        digits = 2 if score in (IWELBO, RELATIVE) else 3
        shown[score] = [mean_sd(m, s, digits) for m, s in zip(summary[f"{score} mean"], summary[f"{score} sd"])]
    write_csv(summary, out / SUMMARY_CSV, index=False)
    markdown = comparison_markdown(shown.set_index(shown.columns[0])) + _notes(frame, replicates, reference)
    write_text(out / SUMMARY_MD, markdown)
    return summary


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _notes(frame: pd.DataFrame, replicates: Sequence[str], reference: Mapping[str, Any]) -> str:
    lines = ["", f"Mean ± sd over {', '.join(replicates)} (n runs per row)." if replicates else "One run per row."]
    if reference:
        lines.append("Relative IWELBO: run minus the run with " + ", ".join(f"{k}={v}" for k, v in reference.items())
                     + " and otherwise the same settings (same held-out cells), nats per cell; higher is better.")
    failed = frame[~frame["status"].isin(["ok", "reused"])]
    lines += [f"Failed: {name}: {status}" for name, status in failed["status"].items()]
    return "\n".join(lines) + "\n"

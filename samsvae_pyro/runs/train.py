"""The one train -> save -> evaluate sequence, and the runs that use it: the demo, a user's AnnData, a config.

:func:`train_run` trains a model, saves it with its history (:func:`~samsvae_pyro.runs.layout.save_run`)
and writes the evaluation report of the best checkpoint into the same directory
(:func:`~samsvae_pyro.runs.evaluate_run`). ``samsvae demo`` calls it through :func:`run_demo`,
``samsvae train --adata`` through :func:`train_anndata`, ``samsvae train --config`` and ``samsvae sweep``
through :func:`run_config`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from anndata import AnnData

from samsvae_pyro.api import SAMSVAE, PerturbationModel
from samsvae_pyro.data import simulate_counts
from samsvae_pyro.defaults import MAX_STEPS
from samsvae_pyro.device import DEFAULT_THREADS, check_threads
from samsvae_pyro.runs.config import dump_config
from samsvae_pyro.runs.evaluation import evaluate_run
from samsvae_pyro.runs.experiment import build_model, open_run, prepare_data
from samsvae_pyro.runs.layout import EXPERIMENT, METRICS, MODEL_FILES, TRUTH_KEY, save_run

Log = Callable[[str], Any]
DEMO_SETUP = dict(perturbation_key="perturbation", control_label="non-targeting", split_key="split")
LONG_RUN, CHECKPOINT_EVERY = 5_000, 1_000  # runs of at least LONG_RUN steps save a checkpoint every CHECKPOINT_EVERY
DEMO_MODEL = dict(guide="correlated", device="cpu")  # the package's defaults (samsvae_pyro.defaults)


def check_run_dir(run_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """``run_dir``, refused when it already holds a saved model and ``overwrite`` is False."""
    run_dir = Path(run_dir)
    if any((run_dir / name).exists() for name in MODEL_FILES) and not overwrite:
        raise ValueError(f"{run_dir} already holds a saved model; choose another output directory (--out) or "
                         "overwrite it (--overwrite).")
    return run_dir


def train_run(model: PerturbationModel, run_dir: str | os.PathLike, *, train: Mapping[str, Any] | None = None,
              evaluate: Mapping[str, Any] | None = None, truth: Mapping[str, Any] | None = None,
              log: Log | None = None) -> dict:
    """Train ``model``, save it in ``run_dir``, then evaluate its best checkpoint there.

    Parameters
    ----------
    model
        An untrained (or partly trained) model.
    run_dir
        Run directory (created; a previous model there is replaced, its metrics removed first).
    train
        Arguments of :meth:`~samsvae_pyro.api.base.PerturbationModel.train`.
    evaluate
        Arguments of :func:`~samsvae_pyro.runs.evaluate_run`; ``None`` trains and saves only.
    truth
        Simulation truth for the evaluation (``adata.uns["sams_truth"]``).
    log
        Called with a line of progress after saving and before evaluating (e.g. ``print``).

    Returns
    -------
    The metrics (the content of ``metrics.json``), or ``{}`` without evaluation.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).unlink(missing_ok=True)  # a finished run is one with metrics
    train = dict(train or {})
    if train.get("checkpoint_every") is None and train.get("max_steps", 0) >= LONG_RUN:
        train["checkpoint_every"] = CHECKPOINT_EVERY
    model.train(**train, checkpoint=_checkpoint_into(run_dir))
    return _save_and_evaluate(model, run_dir, evaluate=evaluate, truth=truth, log=log)


def resume_run(run_dir: str | os.PathLike, adata_path: str | os.PathLike | None = None, *,
               evaluate: Mapping[str, Any] | None = None, progress: bool = True, log: Log | None = None,
               backed: bool = False, **overrides: Any) -> dict:
    """Continue the interrupted training saved in ``run_dir`` (its last checkpoint) to its step count, then save
    and evaluate as :func:`train_run` does. ``adata_path``: the data of a ``train --adata`` run (a config run
    rebuilds its own; ``backed``: leave its counts on disk); ``overrides``: e.g. ``devices`` for the rest of the
    run. Returns the metrics."""
    model, adata = open_run(run_dir, adata_path, backed=backed)
    model.resume(progress=progress, checkpoint=_checkpoint_into(Path(run_dir)), **overrides)
    return _save_and_evaluate(model, Path(run_dir), evaluate=evaluate, truth=adata.uns.get(TRUTH_KEY), log=log)


def _checkpoint_into(run_dir: Path) -> Callable:
    """The periodic checkpoint of a run: the whole run saved atomically in place (picklable for spawned processes)."""
    return partial(save_run, run_dir=run_dir, overwrite=True)


def _save_and_evaluate(model: PerturbationModel, run_dir: Path, *, evaluate: Mapping[str, Any] | None,
                       truth: Mapping[str, Any] | None, log: Log | None) -> dict:
    say = log or (lambda _: None)
    save_run(model, run_dir, overwrite=True)
    say(f"saved the model in {run_dir}")
    if evaluate is None:
        return {}
    say("evaluating (held-out IWELBO, treatment effects, baselines, mask recovery, plots)")
    return evaluate_run(model, run_dir, truth=truth, **evaluate)


def demo_data(*, seed: int = 0, small: bool = False) -> tuple[AnnData, list[str]]:
    """Count simulation with control cells and 6 pairs, 2 of which are held out of training (test only)."""
    size = dict(n_perturbations=6, cells_per_perturbation=60, n_double=3, n_ate_samples=300) if small else \
        dict(n_perturbations=12, cells_per_perturbation=200, n_double=6, n_ate_samples=2000)
    adata = simulate_counts(seed=seed, **size)
    pairs = [c for c in adata.uns[TRUTH_KEY]["true_ate_conditions"] if "+" in c]
    held_out = pairs[-2:]
    split = adata.obs["split"].astype(str).to_numpy()
    split[adata.obs["perturbation"].astype(str).isin(held_out).to_numpy()] = "test"
    adata.obs["split"] = split
    return adata, held_out


def run_demo(out: str | os.PathLike, *, steps: int = MAX_STEPS, seed: int = 0, small: bool = False,
             progress: bool = True, threads: int | None = DEFAULT_THREADS, log: Log | None = None) -> dict:
    """Simulate (:func:`demo_data`), train SAMS-VAE briefly, save and evaluate into ``out``; returns the metrics."""
    say = log or (lambda _: None)
    adata, held_out = demo_data(seed=seed, small=small)
    say(f"simulated {adata.n_obs} cells x {adata.n_vars} genes: {len(adata.uns[TRUTH_KEY]['true_ate_conditions'])} "
        f"conditions (singles and pairs; pairs {', '.join(held_out)} only in the test split), seed {seed}")
    SAMSVAE.setup_anndata(adata, **DEMO_SETUP)
    model = SAMSVAE(adata, **DEMO_MODEL, seed=seed, threads=threads)
    say(f"training SAMS-VAE (correlated guide) for {steps} steps")
    train = dict(max_steps=steps, val_every=max(steps // 5, 1), seed=seed, progress=progress)
    evaluate = dict(n_particles=20 if small else 100, seed=seed)
    return train_run(model, out, train=train, evaluate=evaluate, truth=adata.uns[TRUTH_KEY], log=log)


def train_anndata(adata: AnnData, run_dir: str | os.PathLike, *, setup: Mapping[str, Any],
                  model: Mapping[str, Any], train: Mapping[str, Any], evaluate: Mapping[str, Any] | None,
                  log: Log | None = None) -> dict:
    """Register ``adata`` (``setup``), build SAMS-VAE (``model`` arguments) and :func:`train_run` it."""
    say = log or (lambda _: None)
    SAMSVAE.setup_anndata(adata, **setup)
    fitted = SAMSVAE(adata, **model)
    say(f"training SAMS-VAE ({fitted.guide_spec} guide) on {adata.n_obs} cells x {adata.n_vars} genes, "
        f"{fitted.data.n_perturbations} perturbations, for {train['max_steps']} steps")
    return train_run(fitted, run_dir, train=train, evaluate=evaluate, truth=adata.uns.get(TRUTH_KEY), log=log)


def run_config(config: Mapping[str, Any], run_dir: str | os.PathLike, *, overwrite: bool = False,
               progress: bool = True, evaluate: bool = True, threads: int | None = DEFAULT_THREADS,
               log: Log | None = None) -> dict:
    """Train the run of a resolved config, save it, and evaluate its best checkpoint, all in ``run_dir``.

    Parameters
    ----------
    config
        A resolved config (:func:`~samsvae_pyro.runs.config.resolve_config`), written to ``experiment.yaml``.
    run_dir
        Run directory (created); one that already holds a saved model needs ``overwrite``.
    overwrite, progress, evaluate
        Replace a saved model; show a progress bar; write the evaluation report after training.
    threads
        Torch CPU threads of the model (``None``: torch's setting).
    log
        As in :func:`train_run`.

    Returns
    -------
    The metrics (the content of ``metrics.json``), or ``{}`` when ``evaluate`` is False.
    """
    run_dir = check_run_dir(run_dir, overwrite=overwrite)
    adata = prepare_data(config)
    model = build_model(config, adata)
    model.threads = check_threads(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).unlink(missing_ok=True)  # before the new config: a finished run is one with metrics
    dump_config(config, run_dir / EXPERIMENT)
    return train_run(model, run_dir, train={**config["train"], "progress": progress},
                     evaluate=config["evaluate"] if evaluate else None, truth=adata.uns.get(TRUTH_KEY), log=log)
